"""Learned output caps shared through PostgreSQL (upstream/learned_caps_pg.py), over a stand-in Database: a cap
learned here is written (upsert and NOTIFY "cap:<model>") and kept in the folder's file; another gateway's
caps are copied in; one learned while the database is away is shared once it is back.
tests/e2e/test_e2e_shared_state.py runs it on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import logging

import pytest

from qwen_gateway.storage.health import StateUnavailable
from qwen_gateway.upstream.learned_caps import LearnedCaps
from qwen_gateway.upstream.learned_caps_pg import COMPONENT, STEPS, SharedLearnedCaps


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


async def test_a_cap_learned_here_is_kept_and_shared(tmp_path, db):
    caps = SharedLearnedCaps(tmp_path, db)
    try:
        caps.learn("qwen3-max", 32768, 1000.0)
        await asyncio.gather(*db.tasks)
        assert caps["qwen3-max"] == 32768
        assert db.executed == [("INSERT INTO learned_caps (model, cap, learned) VALUES (%s,%s,%s) ON CONFLICT (model) "
                                "DO UPDATE SET cap=EXCLUDED.cap, learned=EXCLUDED.learned", ("qwen3-max", 32768, 1000.0),
                                "cap:qwen3-max")]
    finally:
        caps.close()
    assert LearnedCaps(tmp_path) == {"qwen3-max": 32768}  # the folder's file too: a restart knows it at once


async def test_listening_starts_with_the_object_and_close_stops_it(db):
    caps = SharedLearnedCaps(None, db)
    await asyncio.sleep(0)
    assert db.followed == [(COMPONENT, STEPS, "cap", SharedLearnedCaps.REFRESH_S, "learned output caps")]
    assert [cb for cb, _ in db.health.back] == [caps._share_unshared]
    listener = caps._listener
    caps.close()
    await asyncio.sleep(0)
    assert listener is not None and listener.cancelled()


async def test_the_other_gateways_caps_are_copied_without_being_written_back(db):
    caps = SharedLearnedCaps(None, db)
    try:
        db.rows = [("qwen3-max", 32768, 5.0), ("qwen-plus", 8192, None)]
        await caps._copy(None)
        assert dict(caps) == {"qwen3-max": 32768, "qwen-plus": 8192}
        assert db.fetched == [("SELECT model, cap, learned FROM learned_caps", ())]
        db.rows = [("qwen3-max", 16384, 6.0), ("qwen-plus", 4096, 6.0)]
        await caps._copy("qwen3-max")  # a NOTIFY names one model: only its row is read
        assert dict(caps) == {"qwen3-max": 16384, "qwen-plus": 8192}
        assert db.fetched[-1] == ("SELECT model, cap, learned FROM learned_caps WHERE model=%s", ("qwen3-max",))
        await asyncio.gather(*db.tasks)
        assert db.executed == []  # a copied cap is not shared again
    finally:
        caps.close()


async def test_a_cap_learned_while_the_database_is_away_is_shared_when_it_is_back(db, caplog):
    caps = SharedLearnedCaps(None, db)
    try:
        db.fail = StateUnavailable("the shared database is not reachable")
        with caplog.at_level(logging.WARNING, "qwen"):
            caps.learn("m", 1000, 1.0)
            caps.learn("m", 900, 2.0)
            await asyncio.gather(*db.tasks)
        assert caplog.messages == [] and db.executed == []  # the Health says it, once
        db.fail = None
        caps._share_unshared()  # what the Health calls once the database is back
        await asyncio.gather(*db.tasks)
        assert [(args, note) for _, args, note in db.executed] == [(("m", 900, 2.0), "cap:m")]  # the newest only
        caps._share_unshared()
        await asyncio.gather(*db.tasks)
        assert len(db.executed) == 1  # shared once
    finally:
        caps.close()


async def test_another_failure_is_logged_and_the_cap_kept_here(db, caplog):
    caps = SharedLearnedCaps(None, db)
    try:
        db.fail = RuntimeError("syntax error at or near")
        with caplog.at_level(logging.WARNING, "qwen"):
            caps.learn("m", 1000, 1.0)
            await asyncio.gather(*db.tasks)
        assert caplog.messages == ["qwen: could not share a learned output cap: RuntimeError"]
        assert caps["m"] == 1000 and caps._unshared == {}
    finally:
        caps.close()


def test_without_an_event_loop_a_cap_is_local_only(tmp_path):
    """A script (no loop): nothing listens and nothing is sent; the cap is kept all the same."""
    class NoLoop(StandInDB):
        def background(self, coro, name):
            coro.close()
            raise RuntimeError("no running event loop")
    db = NoLoop()
    caps = SharedLearnedCaps(tmp_path, db)
    caps.learn("m", 1000, 1.0)
    caps.close()
    assert caps._listener is None and db.health.back == [] and db.executed == []
    assert LearnedCaps(tmp_path) == {"m": 1000}
