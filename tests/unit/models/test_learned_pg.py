"""Learned facts shared through PostgreSQL (models/learned_pg.py), over a stand-in Database: a fact learned here
is written (upsert and NOTIFY "fact:<model>") and kept in the folder's file; another gateway's facts are copied
in, and what the database no longer holds is forgotten here; one learned while the database is away is shared
once it is back; an invalid row is skipped. tests/e2e/test_e2e_shared_state.py runs it on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from qwen_gateway.storage.health import StateUnavailable
from qwen_gateway.models.learned import OUTPUT, LearnedFacts
from qwen_gateway.models.learned_pg import _ROWS, _UPSERT, COMPONENT, STEPS, SharedLearnedFacts

NOW = time.time()  # facts hold a day from when they were learned


class StandInHealth:
    def __init__(self) -> None:
        self.back: list = []

    def when_back(self, callback, loop=None):
        self.back.append((callback, loop))


class StandInDB:
    def __init__(self) -> None:
        self.health = StandInHealth()
        self.rows: list[tuple] = []
        self.fail: Exception | None = None
        self.executed: list[tuple[str, tuple, str | None]] = []
        self.fetched: list[tuple[str, tuple]] = []
        self.tasks: list[asyncio.Task] = []
        self.followed: list[tuple] = []

    async def amigrate(self, component, steps):
        assert (component, tuple(steps)) == (COMPONENT, STEPS)
        if self.fail is not None:
            raise self.fail

    async def fetch(self, sql, args=()):
        self.fetched.append((sql, tuple(args)))
        return [r for r in self.rows if not args or r[0] == args[0]]

    async def execute(self, sql, args=(), *, notify=None):
        self.executed.append((sql, tuple(args), notify))
        return 1

    def background(self, coro, name):
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.append(task)
        return task

    async def follow(self, component, steps, kind, reload, *, every, what, ready=None):
        self.followed.append((component, tuple(steps), kind, every, what))
        await asyncio.Event().wait()


@pytest.fixture
def db():
    return StandInDB()


async def test_a_fact_learned_here_is_kept_and_shared(tmp_path, db):
    facts = SharedLearnedFacts(tmp_path, db)
    try:
        facts.learn("qwen3-max", OUTPUT, 32768, 1000.0)
        await asyncio.gather(*db.tasks)
        assert facts.facts[("qwen3-max", OUTPUT)].value == 32768
        assert db.executed == [(_UPSERT, ("qwen3-max", OUTPUT, 32768, 1000.0), "fact:qwen3-max")]
        assert facts._unshared == {}
    finally:
        facts.close()
    assert [(f.model, f.value) for f in LearnedFacts(tmp_path).rows()] == [("qwen3-max", 32768)]  # the folder too


async def test_listening_starts_with_the_object_and_close_stops_it(db):
    facts = SharedLearnedFacts(None, db)
    await asyncio.sleep(0)
    assert db.followed == [(COMPONENT, STEPS, "fact", SharedLearnedFacts.REFRESH_S, "learned facts")]
    assert [cb for cb, _ in db.health.back] == [facts._share_unshared]
    listener = facts._listener
    facts.close()
    await asyncio.sleep(0)
    assert listener is not None and listener.cancelled()


async def test_the_other_gateways_facts_are_copied_and_a_forgotten_one_goes(db, caplog):
    facts = SharedLearnedFacts(None, db)
    try:
        db.rows = [("qwen3-max", OUTPUT, 32768, 5.0), ("qwen-plus", OUTPUT, 9000, 5.0),
                   ("poisoned", OUTPUT, 1, 5.0), ("broken", OUTPUT, "lots", 5.0)]
        with caplog.at_level(logging.WARNING, "qwen"):
            await facts._copy(None)
        assert {k[0]: f.value for k, f in facts.facts.items()} == {"qwen3-max": 32768, "qwen-plus": 9000}
        assert len([m for m in caplog.messages if "skipped" in m]) == 2
        assert db.fetched == [(_ROWS, ())]
        db.rows = [("qwen-plus", OUTPUT, 16384, 6.0)]
        await facts._copy("qwen3-max")  # a NOTIFY names one model: only its rows are read, and it holds none now
        assert {k[0]: f.value for k, f in facts.facts.items()} == {"qwen-plus": 9000}
        assert db.fetched[-1] == (_ROWS + " WHERE model=%s", ("qwen3-max",))
        await asyncio.gather(*db.tasks)
        assert db.executed == []  # a copied fact is not shared again
    finally:
        facts.close()


async def test_forget_deletes_the_rows_and_tells_the_others(db):
    facts = SharedLearnedFacts(None, db)
    try:
        facts.learn("m", OUTPUT, 40000, 1.0)
        await asyncio.gather(*db.tasks)
        assert facts.forget("m") == 1
        await asyncio.gather(*db.tasks)
        assert db.executed[-1] == ("DELETE FROM learned_facts WHERE model=%s", ("m",), "fact:m")
    finally:
        facts.close()


async def test_a_fact_learned_while_the_database_is_away_is_shared_when_it_is_back(db, caplog):
    facts = SharedLearnedFacts(None, db)
    try:
        db.fail = StateUnavailable("the shared database is not reachable")
        with caplog.at_level(logging.WARNING, "qwen"):
            facts.learn("m", OUTPUT, 10000, NOW)
            facts.learn("m", OUTPUT, 9000, NOW + 1)
            await asyncio.gather(*db.tasks)
        assert caplog.messages == [] and db.executed == []  # the Health says it, once
        db.rows = []
        await facts._copy(None)  # a reload meanwhile keeps what the database has not taken yet
        assert facts.value("m", OUTPUT) == 9000
        db.fail = None
        facts._share_unshared()  # what the Health calls once the database is back
        await asyncio.gather(*db.tasks)
        assert [(args, note) for _, args, note in db.executed] == [(("m", OUTPUT, 9000, NOW + 1), "fact:m")]  # the newest
        facts._share_unshared()
        await asyncio.gather(*db.tasks)
        assert len(db.executed) == 1  # shared once
    finally:
        facts.close()


async def test_another_failure_is_logged_and_the_fact_kept_here(db, caplog):
    facts = SharedLearnedFacts(None, db)
    try:
        db.fail = RuntimeError("syntax error at or near")
        with caplog.at_level(logging.WARNING, "qwen"):
            facts.learn("m", OUTPUT, 10000, NOW)
            await asyncio.gather(*db.tasks)
        assert caplog.messages == ["qwen: could not share a learned fact: RuntimeError"]
        assert facts.value("m", OUTPUT) == 10000
    finally:
        facts.close()


def test_without_an_event_loop_a_fact_is_local_only(tmp_path):
    """A script (no loop): nothing listens and nothing is sent; the fact is kept all the same."""
    class NoLoop(StandInDB):
        def background(self, coro, name):
            coro.close()
            raise RuntimeError("no running event loop")
    db = NoLoop()
    facts = SharedLearnedFacts(tmp_path, db)
    facts.learn("m", OUTPUT, 10000, 1.0)
    facts.close()
    assert facts._listener is None and db.health.back == [] and db.executed == []
    assert [(f.model, f.value) for f in LearnedFacts(tmp_path).rows()] == [("m", 10000)]
