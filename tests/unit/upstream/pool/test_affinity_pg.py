"""Conversation affinity shared through PostgreSQL (upstream/pool/affinity_pg.py), over a stand-in Database that records
the statements: the row read for a conversation memory does not know, the upsert and NOTIFY written for a new or
moved one, the other gateways' notifications applied, and the database away never failing a turn.
tests/e2e/test_e2e_affinity.py runs it on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from qwen_gateway.upstream.pool.affinity_pg import COMPONENT, FOLLOW_S, KIND, PRUNE_EVERY, STEPS, SharedAffinity
from qwen_gateway.storage.health import StateUnavailable


class StandInDB:
    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.fail: Exception | None = None
        self.migrated: list[tuple[str, tuple]] = []
        self.executed: list[tuple[str, tuple, str | None]] = []
        self.fetched: list[tuple[str, tuple]] = []
        self.tasks: list[asyncio.Task] = []
        self.followed: list[tuple] = []

    async def amigrate(self, component, steps):
        self.migrated.append((component, tuple(steps)))
        if self.fail is not None:
            raise self.fail

    async def fetch(self, sql, args=()):
        self.fetched.append((sql, tuple(args)))
        return self.rows

    async def execute(self, sql, args=(), *, notify=None):
        self.executed.append((sql, tuple(args), notify))
        return 1

    def background(self, coro, name):
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.append(task)
        return task

    async def follow(self, component, steps, kind, reload, *, every, what, ready=None):
        self.followed.append((component, tuple(steps), kind, reload, every, what))
        await asyncio.Event().wait()


@pytest.fixture
def db():
    return StandInDB()


async def test_a_conversation_memory_does_not_know_is_read_once_and_kept(db):
    aff = SharedAffinity(db)
    expires = time.time() + 600
    db.rows = [("work", expires)]
    assert await aff.fetch("conv-1") == "work"
    assert db.migrated == [(COMPONENT, STEPS)]
    assert db.fetched == [("SELECT account, expires FROM conversation_account WHERE conversation=%s", ("conv-1",))]
    assert aff.get("conv-1") == "work"  # in memory now: the next turn reads nothing


async def test_an_expired_or_missing_row_is_no_account(db):
    aff = SharedAffinity(db)
    assert await aff.fetch("nobody") is None
    db.rows = [("work", time.time() - 1)]
    assert await aff.fetch("old") is None and aff.get("old") is None


@pytest.mark.parametrize("error,logged", [(StateUnavailable("down"), []),
                                          (RuntimeError("bad"), ["qwen: could not read a conversation's account "
                                                                 "from the shared database: RuntimeError"])])
async def test_the_database_failing_leaves_the_turn_to_the_pool(db, caplog, error, logged):
    """Unavailable: said once by the database's Health, not here; another failure: a warning with its kind only."""
    db.fail = error
    with caplog.at_level(logging.WARNING, "qwen"):
        assert await SharedAffinity(db).fetch("conv") is None
    assert caplog.messages == logged


async def test_a_new_conversation_is_written_with_a_notify_and_only_a_move_writes_again(db):
    aff = SharedAffinity(db, ttl_s=600)
    aff.keep("conv-1", "work")
    aff.keep("conv-1", "work")  # the same account, the shared entry young: nothing written
    await asyncio.gather(*db.tasks)
    assert len(db.executed) == 1
    sql, (key, account, expires), notify = db.executed[0]
    assert sql.startswith("INSERT INTO conversation_account VALUES (%s, %s, %s) ON CONFLICT (conversation) DO UPDATE")
    assert (key, account) == ("conv-1", "work") and notify == f"affinity:conv-1 work {expires!r}"
    aff.keep("conv-1", "other")  # moved: written again
    await asyncio.gather(*db.tasks)
    assert [(args[:2], note.split(" ")[:2]) for _, args, note in db.executed[1:]] == [
        (("conv-1", "other"), ["affinity:conv-1", "other"])]


async def test_every_hundredth_write_deletes_expired_rows(db):
    aff = SharedAffinity(db)
    for n in range(PRUNE_EVERY):
        aff.keep(f"conv-{n}", "work")
    await asyncio.gather(*db.tasks)
    deletes = [(sql, args) for sql, args, _ in db.executed if sql.startswith("DELETE")]
    assert len(db.executed) == PRUNE_EVERY + 1 and len(deletes) == 1
    assert deletes[0][0] == "DELETE FROM conversation_account WHERE expires < %s"


async def test_a_write_that_fails_is_logged_by_kind_and_memory_keeps_the_entry(db, caplog):
    db.fail = ConnectionError("host db.internal refused")
    aff = SharedAffinity(db)
    with caplog.at_level(logging.WARNING, "qwen"):
        aff.keep("conv", "work")
        await asyncio.gather(*db.tasks)
    assert caplog.messages == ["qwen: could not share a conversation's account: ConnectionError"]
    assert aff.get("conv") == "work" and db.executed == []


def test_without_an_event_loop_nothing_is_shared(db):
    """A command (no loop): memory only, no error, and the coroutine is not left unawaited."""
    class NoLoop(StandInDB):
        def background(self, coro, name):
            coro.close()
            raise RuntimeError("no running event loop")
    aff = SharedAffinity(NoLoop())
    aff.keep("conv", "work")
    assert aff.get("conv") == "work"


async def test_another_gateways_move_is_applied_to_a_conversation_memory_knows(db):
    aff = SharedAffinity(db)
    aff.learn("known", "a", time.time() + 600)
    later = time.time() + 900
    await aff._heard(f"known b {later!r}")
    await aff._heard(f"unknown b {later!r}")  # not known here: not read, not kept
    await aff._heard("known c not-a-time")  # a malformed payload changes nothing
    await aff._heard("known")  # nor does one without an account
    assert aff.get("known") == "b" and aff.get("unknown") is None
    assert aff._entries["known"][1] == later


async def test_the_periodic_pass_drops_lapsed_entries(db):
    aff = SharedAffinity(db)
    aff.learn("fresh", "a", time.time() + 600)
    aff.learn("lapsing", "a", time.time() + 600)
    aff._entries["lapsing"] = ("a", time.time() - 1, 0.0)
    await aff._heard(None)
    assert list(aff._entries) == ["fresh"]


async def test_start_follows_the_table_once_and_close_stops(db):
    aff = SharedAffinity(db)
    aff.start()
    aff.start()
    await asyncio.sleep(0)
    assert len(db.followed) == 1
    component, steps, kind, reload, every, what = db.followed[0]
    assert (component, steps, kind, reload, every, what) == (COMPONENT, STEPS, KIND, aff._heard, FOLLOW_S,
                                                            "shared conversation affinity")
    listener = aff._listener
    aff.close()
    await asyncio.sleep(0)
    assert listener is not None and listener.cancelled() and aff._listener is None

