"""`Database.follow` and the database's one `Listener` (storage/pg_follow.py), over a stand-in database: every
store of a process on ONE listening connection (each NOTIFY handed to its kind's stores, everything read again
each time it connects); each follower migrates, reads everything, then everything again each `every`; the
database away retried quietly (its Health says so), another failure logged and retried; the listening
connection always closed, never waited for long. tests/unit/storage/test_shared_state.py follows a real
PostgreSQL, tests/e2e/test_e2e_many_gateways.py counts the sessions of real gateways."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import psycopg
import pytest

from qwen_gateway.storage import pg_follow
from qwen_gateway.storage.health import StateUnavailable
from qwen_gateway.storage.pg_follow import Listener, follow


class Conn:
    """A LISTENing connection: `notifies` yields its payloads, then waits for ever (or, with `end`, ends: the
    connection lost); `close` hangs with `hang`."""

    def __init__(self, payloads: list[str], hang: bool = False, end: bool = False) -> None:
        self.payloads, self.hang, self.end = payloads, hang, end
        self.closed = self.notes_closed = False

    def notifies(self):
        return self._notes()

    async def _notes(self):
        try:
            for payload in self.payloads:
                yield SimpleNamespace(payload=payload)
            if not self.end:
                await asyncio.Event().wait()
        finally:
            self.notes_closed = True

    async def close(self) -> None:
        if self.hang:
            await asyncio.Event().wait()
        self.closed = True


class DB:
    def __init__(self, conns: list, migrate_errors: list | None = None) -> None:
        self.conns = conns
        self.migrate_errors = migrate_errors or []
        self.migrated: list[tuple] = []
        self.lost_with: list[BaseException] = []
        self.listener = Listener(self)
        self.listener._connect = self._connect  # type: ignore[method-assign]

    async def _connect(self):
        if not self.conns:
            await asyncio.Event().wait()
        return self.conns.pop(0)

    async def amigrate(self, component, steps):
        self.migrated.append((component, tuple(steps)))
        if self.migrate_errors:
            raise self.migrate_errors.pop(0)

    def lost(self, e):
        self.lost_with.append(e)


async def until(check, tries: int = 400) -> None:
    for _ in range(tries):
        if check():
            return
        await asyncio.sleep(0.001)


def follower(db: DB, kind: str, seen: list, every: float = 5.0, **kw) -> asyncio.Task:
    async def reload(key):
        seen.append(key)
    return asyncio.create_task(follow(db, kind, ["step"], kind, reload, every=every, what=f"{kind} store", **kw))


async def stop(*tasks: asyncio.Task) -> None:
    for task in tasks:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_every_store_on_one_connection_each_kind_to_its_own():
    conn = Conn(["key:alice", "fact:qwen3-max", "key:bob", "account:a", "key:"])
    db, keys, facts, ready = DB([conn]), [], [], asyncio.Event()
    tasks = [follower(db, "key", keys, ready=ready), follower(db, "fact", facts)]
    await until(lambda: len(keys) >= 5 and len(facts) >= 3)
    await stop(*tasks)
    # each follower's own first read, the listener's read of everything as it connected, then its own kind
    assert [k for k in keys if k is not None] == ["alice", "bob", ""] and keys.count(None) == 2
    assert [k for k in facts if k is not None] == ["qwen3-max"]
    assert db.listener.connections == 1 and ready.is_set()
    assert db.migrated == [("key", ("step",)), ("fact", ("step",))]
    assert conn.notes_closed and conn.closed and db.listener.task is None  # the last follower gone: closed


async def test_a_lost_connection_is_listened_to_again_and_everything_read(monkeypatch):
    monkeypatch.setattr(pg_follow, "RETRY_S", 0.0)
    first, second = Conn(["key:alice"], end=True), Conn(["key:bob"])
    db, keys = DB([first, second]), []
    task = follower(db, "key", keys)
    await until(lambda: "bob" in keys)
    await stop(task)
    after_alice = keys[keys.index("alice") + 1:]
    assert after_alice[0] is None and "bob" in after_alice  # what changed while nothing listened: read
    assert db.listener.connections == 2 and first.closed


async def test_the_database_away_is_retried_quietly(monkeypatch, caplog):
    monkeypatch.setattr(pg_follow, "PROBE_S", 0.0)
    down = psycopg.OperationalError("connection refused")
    db, keys = DB([Conn([])], migrate_errors=[StateUnavailable("down"), down]), []
    with caplog.at_level(logging.WARNING, "qwen"):
        task = follower(db, "key", keys)
        await until(lambda: len(keys) >= 1)
        await stop(task)
    assert keys[:1] == [None] and len(db.migrated) == 3
    assert caplog.messages == []


async def test_another_failure_is_logged_and_retried_after_every(caplog):
    db, keys = DB([Conn([])], migrate_errors=[ValueError("bad statement")]), []
    with caplog.at_level(logging.WARNING, "qwen"):
        task = follower(db, "key", keys, every=0.01)
        await until(lambda: len(keys) >= 1)
        await stop(task)
    assert keys[:1] == [None] and db.lost_with == []
    assert caplog.messages == ["qwen: key store: ValueError (retrying in 0 s)"]


async def test_a_failing_reload_does_not_end_the_listening():
    conn = Conn(["key:alice", "key:bob"])
    db, seen = DB([conn]), []

    async def reload(key):
        seen.append(key)
        if key == "alice":
            raise KeyError("alice")
    task = asyncio.create_task(follow(db, "keys", ["step"], "key", reload, every=5.0, what="named keys"))
    await until(lambda: "bob" in seen)
    await stop(task)
    assert "bob" in seen and db.listener.connections == 1


async def test_a_restart_the_listener_sees_first_is_told_to_the_database(monkeypatch):
    monkeypatch.setattr(pg_follow, "PROBE_S", 0.0)
    down = psycopg.OperationalError("server closed the connection unexpectedly")
    db, keys = DB([Conn([])]), []

    async def refused():
        raise down
    connects = iter([refused, db._connect])
    db.listener._connect = lambda: next(connects)()  # type: ignore[method-assign]
    task = follower(db, "key", keys)
    await until(lambda: db.listener.connections == 1)
    await stop(task)
    assert db.lost_with == [down]


async def test_closing_a_connection_that_hangs_is_bounded(monkeypatch):
    monkeypatch.setattr(pg_follow, "CLOSE_S", 0.01)
    conn = Conn([], hang=True)
    db, keys = DB([conn]), []
    task = follower(db, "key", keys)
    await until(lambda: db.listener.connections == 1)
    listening = db.listener.task
    await stop(task)
    with pytest.raises(asyncio.CancelledError):
        await listening
    assert conn.notes_closed and not conn.closed


class Echoing(DB):
    """A database whose pool delivers (or, `deaf`, never delivers) a NOTIFY to the listening connection."""

    def __init__(self, conn: Conn, *, deaf: bool = False, pool_down: bool = False) -> None:
        super().__init__([conn])
        self.conn, self.deaf, self.pool_down, self.sent = conn, deaf, pool_down, []

    async def execute(self, sql, args=()):
        if self.pool_down:
            raise StateUnavailable("down")
        self.sent.append(args[1])
        if not self.deaf:
            self.conn.queue.put_nowait(args[1])
        return 1


class Live(Conn):
    def __init__(self) -> None:
        super().__init__([])
        self.queue: asyncio.Queue[str] = asyncio.Queue()

    async def _notes(self):
        try:
            while True:
                yield SimpleNamespace(payload=await self.queue.get())
        finally:
            self.notes_closed = True


@pytest.mark.parametrize("deaf", [False, True])
async def test_the_listener_checks_it_hears_its_own_notification_and_says_when_it_does_not(monkeypatch, caplog, deaf):
    monkeypatch.setattr(pg_follow, "HEAR_S", 0.2)
    db = Echoing(Live(), deaf=deaf)
    task = follower(db, "key", [])
    await until(lambda: db.listener.hears is not None, tries=2000)
    await stop(task)
    assert len(db.sent) == 1 and db.sent[0].startswith("listen-check:")
    warned = [r.getMessage() for r in caplog.records if "did not hear" in r.getMessage()]
    assert db.listener.hears is (not deaf) and len(warned) == int(deaf)
    if deaf:
        assert "set qwen_state_listen_url to the database itself" in warned[0]


async def test_a_pool_that_fails_cannot_tell_whether_the_listener_hears(monkeypatch, caplog):
    monkeypatch.setattr(pg_follow, "HEAR_S", 0.05)
    db = Echoing(Live(), pool_down=True)
    task = follower(db, "key", [])
    await until(lambda: db.listener.connections == 1)
    await asyncio.sleep(0.1)
    await stop(task)
    assert db.listener.hears is None and "did not hear" not in caplog.text


def test_each_process_has_its_own_gateway_id_and_its_session_names_it(monkeypatch):
    mine = pg_follow.gateway_id()
    assert pg_follow.gateway_id() == mine and len(mine) == 12
    assert pg_follow.session_name().startswith(f"qwen-gateway {mine} ") and len(pg_follow.session_name()) <= 63
    monkeypatch.setattr(pg_follow.os, "getpid", lambda: -1)  # a process forked from this one
    assert pg_follow.gateway_id() != mine
