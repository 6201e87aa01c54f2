"""`Database.follow` (storage/pg_follow.py), over a stand-in database: migrate, read everything, then one key per
NOTIFY of the store's kind and everything again after each quiet `every`; the database away retried quietly
(its Health says so), another failure logged and retried; the listening connection always closed, and never
waited for long. tests/unit/storage/test_shared_state.py follows a real PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import psycopg
import pytest

from qwen_gateway.storage import pg_follow
from qwen_gateway.storage.health import StateUnavailable
from qwen_gateway.storage.pg_follow import follow


class Listener:
    """A LISTENing connection: each `notifies` pass yields the next batch of payloads, then ends (a quiet
    `every`); with none left it waits for ever (or hangs on being closed, with `hang`)."""

    def __init__(self, batches: list[list[str]], hang: bool = False) -> None:
        self.batches = batches
        self.hang = hang
        self.closed = self.notes_closed = False
        self.timeouts: list[float] = []

    def notifies(self, timeout: float):
        self.timeouts.append(timeout)
        return self._notes(self.batches.pop(0) if self.batches else None)

    async def _notes(self, batch):
        try:
            if batch is None:
                await asyncio.Event().wait()
            for payload in batch or ():
                yield SimpleNamespace(payload=payload)
        finally:
            self.notes_closed = True

    async def close(self) -> None:
        if self.hang:
            await asyncio.Event().wait()
        self.closed = True


class DB:
    def __init__(self, listeners: list, migrate_errors: list | None = None) -> None:
        self.listeners = listeners
        self.migrate_errors = migrate_errors or []
        self.migrated: list[tuple] = []
        self.lost_with: list[BaseException] = []

    async def amigrate(self, component, steps):
        self.migrated.append((component, tuple(steps)))
        if self.migrate_errors:
            raise self.migrate_errors.pop(0)

    async def listen(self):
        return self.listeners.pop(0)

    def lost(self, e):
        self.lost_with.append(e)


async def run_until(db, reloads: list, count: int, **kw) -> asyncio.Task:
    async def reload(key):
        reloads.append(key)
    task = asyncio.create_task(follow(db, "keys", ["step"], "key", reload, every=kw.pop("every", 5.0),
                                      what="named keys", **kw))
    for _ in range(200):
        if len(reloads) >= count:
            break
        await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return task


async def test_everything_then_each_key_its_kind_names_then_everything_again():
    conn = Listener([["key:alice", "cap:qwen3-max", "key:bob", "key:"], []])
    db, reloads, ready = DB([conn]), [], asyncio.Event()
    await run_until(db, reloads, 6, ready=ready)
    assert reloads == [None, "alice", "bob", "", None, None]  # another store's kind ("cap") is not ours
    assert db.migrated == [("keys", ("step",))] and ready.is_set()
    assert conn.timeouts[0] == 5.0
    assert conn.notes_closed and conn.closed  # cancelled (shutdown): both closed


async def test_the_database_away_is_retried_quietly(monkeypatch, caplog):
    monkeypatch.setattr(pg_follow, "PROBE_S", 0.0)
    down = psycopg.OperationalError("connection refused")  # the listener is often the first to see it
    db, reloads = DB([Listener([])], migrate_errors=[StateUnavailable("down"), down]), []
    with caplog.at_level(logging.WARNING, "qwen"):
        await run_until(db, reloads, 1)
    assert reloads[:1] == [None] and len(db.migrated) == 3
    assert db.lost_with == [down]  # told the database of the second; the first was its own Health's
    assert caplog.messages == []


async def test_another_failure_is_logged_and_retried_after_every(caplog):
    db, reloads = DB([Listener([])], migrate_errors=[ValueError("bad statement")]), []
    with caplog.at_level(logging.WARNING, "qwen"):
        await run_until(db, reloads, 1, every=0.01)
    assert reloads[:1] == [None] and db.lost_with == []
    assert caplog.messages == ["qwen: named keys: ValueError (retrying in 0 s)"]


async def test_a_failing_reload_closes_the_connection_and_starts_over(caplog):
    first, second = Listener([["key:alice"]]), Listener([])
    db = DB([first, second])
    seen: list = []

    async def reload(key):
        seen.append(key)
        if key == "alice":
            raise KeyError("alice")
    task = asyncio.create_task(follow(db, "keys", ["step"], "key", reload, every=0.01, what="named keys"))
    for _ in range(200):
        if len(seen) >= 3:
            break
        await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen[:3] == [None, "alice", None]  # the whole read again on a new connection
    assert first.notes_closed and first.closed and not db.listeners


async def test_closing_a_connection_that_hangs_is_bounded(monkeypatch):
    monkeypatch.setattr(pg_follow, "CLOSE_S", 0.01)
    conn = Listener([], hang=True)
    db, reloads = DB([conn]), []
    task = await run_until(db, reloads, 1)
    assert task.cancelled() and reloads == [None] and conn.notes_closed and not conn.closed
