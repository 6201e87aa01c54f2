"""Where the team's keys live, kept in step with the gateway's memory (tenancy/source.py), with a
state folder under tmp_path (the SQLite side; the shared database's is tests/e2e/test_e2e_keys*.py): the keys
file read at once at configure, another process's change (qwen-keys) picked up at the next tick, spend written
in batches and the spend of a deleted key forgotten, and a folder whose keys were moved to a database shut.
On a real PostgreSQL: a tick's write still under way when the gateway stops is finished, not lost."""

from __future__ import annotations

import asyncio
import hashlib
import logging

import psycopg
import pytest

from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)

from qwen_gateway.tenancy.source import KeySource
from qwen_gateway.tenancy.schema import MOVED_TO, write_note
from qwen_gateway.tenancy.store import FILENAME, KeyStore
from qwen_gateway.tenancy.team import Team
from qwen_gateway.settings.auth import AuthSettings
from qwen_gateway.settings.config import Config
from qwen_gateway.storage.pg import Database
from qwen_gateway.storage.pg_tasks import close_pools
from qwen_gateway.tenancy import source as source_module


def config(tmp_path, **kw) -> Config:
    return Config(auth=AuthSettings.from_env(qwen_dir=tmp_path / ".qwen", state_dir=tmp_path / "state"), **kw)


def add(tmp_path, name: str, **limits) -> None:
    (tmp_path / "state").mkdir(exist_ok=True)
    store = KeyStore.local(tmp_path / "state")
    try:
        store.add(name, hashlib.sha256(f"sk-qg-{name}".encode()).digest(), limits)
    finally:
        store.close()


def remove(tmp_path, name: str) -> None:
    store = KeyStore.local(tmp_path / "state")
    try:
        store.delete(name)
    finally:
        store.close()


@pytest.fixture
def team():
    t = Team()
    yield t
    t.source._stop()


def test_no_keys_file_is_a_gateway_without_named_keys(tmp_path, team):
    team.source.configure(config(tmp_path))
    assert team.ring.loaded and not team.ring.required and team.source.keys_exist() is False
    assert not (tmp_path / "state" / FILENAME).exists()  # configuring makes no file


def test_the_keys_file_is_read_at_configure(tmp_path, team, caplog):
    add(tmp_path, "alice", rpm=3)
    with caplog.at_level(logging.INFO, "qwen"):
        team.source.configure(config(tmp_path))
    assert [r.name for r in team.ring.records] == ["alice"] and team.ring.records[0].rpm == 3
    assert team.ring.required and team.source.keys_exist()
    assert caplog.messages  # what the entrance now means is said


def test_configuring_the_same_place_again_reads_nothing_new(tmp_path, team):
    add(tmp_path, "alice")
    team.source.configure(config(tmp_path))
    ring = team.ring
    team.source.configure(config(tmp_path))
    assert team.ring is ring


async def test_another_processs_changes_are_picked_up_at_the_next_tick(tmp_path, team):
    add(tmp_path, "alice")
    team.source.configure(config(tmp_path))
    add(tmp_path, "bob")
    await team.source._flush()
    assert [r.name for r in team.ring.records] == ["alice", "bob"]


async def test_a_file_made_after_start_is_opened_at_a_tick(tmp_path, team):
    team.source.configure(config(tmp_path))
    await team.source._flush()
    assert not team.ring.required
    add(tmp_path, "alice")
    await team.source._flush()
    assert [r.name for r in team.ring.records] == ["alice"]


async def test_spend_is_written_in_a_batch_and_read_back(tmp_path, team):
    add(tmp_path, "alice")
    team.source.configure(config(tmp_path))
    team.book.charge("alice", requests=2, tokens=150)
    await team.source._flush()
    assert team.book.take_pending() == {}
    store = KeyStore.local(tmp_path / "state")
    try:
        spent = store.spend()["alice"]
    finally:
        store.close()
    assert (spent.requests_today, spent.tokens_today) == (2, 150)


async def test_a_deleted_key_is_told_and_its_pending_spend_not_written(tmp_path, team):
    add(tmp_path, "alice")
    add(tmp_path, "bob")
    told: list[str] = []
    team.deleted.append(told.append)
    team.source.configure(config(tmp_path))
    remove(tmp_path, "bob")
    team.book.charge("bob", requests=1, tokens=10)
    await team.source._flush()
    assert [r.name for r in team.ring.records] == ["alice"] and told == ["bob"]
    add(tmp_path, "bob")  # the name used again: from zero
    store = KeyStore.local(tmp_path / "state")
    try:
        assert "bob" not in store.spend() or store.spend()["bob"].requests_today == 0
    finally:
        store.close()


async def test_keys_moved_to_a_database_shut_the_door_until_pointed_there(tmp_path, team, caplog):
    add(tmp_path, "alice")
    team.source.configure(config(tmp_path))
    remove(tmp_path, "alice")
    store = KeyStore.local(tmp_path / "state")
    try:
        with store.conn:
            write_note(store.conn, MOVED_TO, "postgresql://gw@db.internal/qwen")
    finally:
        store.close()
    with caplog.at_level(logging.WARNING, "qwen"):
        await team.source._flush()
        await team.source._flush()
    assert team.source.moved_to == "postgresql://gw@db.internal/qwen"
    assert not team.ring.loaded  # nothing is served on keys it no longer has
    moved = [m for m in caplog.messages if "were moved to the shared database" in m]
    assert len(moved) == 1 and "every request is refused (503)" in moved[0]  # said once


async def test_a_folders_keys_need_no_waiting_and_have_no_database_to_blame(tmp_path, team):
    """first_read waits only for a shared database's first read; `why` names a database's failure."""
    assert isinstance(team.source, KeySource)
    add(tmp_path, "alice")
    team.source.configure(config(tmp_path))
    await team.source.first_read()  # returns at once: the file was read at configure
    assert team.source.why() == "" and team.source.refusal(config(tmp_path)) is None


async def test_a_write_under_way_at_shutdown_is_finished_not_lost(tmp_path, pg_url, monkeypatch, team):
    """Seen in CI: a request's spend was being written by the second's tick when the gateway stopped; the
    tick was cancelled and `close` wrote nothing (the cancelled write put the spend back only afterwards)."""
    monkeypatch.setattr(source_module, "TICK_S", 0.1)
    store = KeyStore.remote(Database(pg_url))
    try:
        store.add("alice", hashlib.sha256(b"sk-qg-alice").digest(), {})
    finally:
        store.close()
    team.source.configure(Config(auth=AuthSettings.from_env(qwen_dir=tmp_path / ".qwen", state_dir=tmp_path / "state",
                                                            state_url=pg_url)))
    team.running()
    await team.source.first_read()
    blocker = await psycopg.AsyncConnection.connect(pg_url)  # another session holds the spend's table a while
    try:
        await blocker.execute("LOCK TABLE key_day IN EXCLUSIVE MODE")
        team.book.charge("alice", requests=1, tokens=3)
        for _ in range(500):  # a tick has taken the spend and waits on the lock (10 s at most: a busy machine)
            await asyncio.sleep(0.02)
            if team.book.writing:
                break
        assert team.book.writing and not team.book.pending
        asyncio.get_running_loop().call_later(0.3, lambda: asyncio.ensure_future(blocker.rollback()))
        await team.close()
    finally:
        await blocker.close()
        await close_pools()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT name, requests, tokens FROM key_day").fetchall() == [("alice", 1, 3)]


async def test_a_database_left_for_another_keeps_no_listener_of_the_keys(tmp_path, pg_url, team):
    """Seen in CI: a gateway's qwen_state_url set to a database that is nowhere and back; the keys' spend
    notices ("key-spend") stayed registered on the one left, whose LISTEN kept trying it and said the shared
    database unavailable again, so readiness stayed 503 on the database in use."""
    def on(url: str) -> Config:
        return Config(auth=AuthSettings.from_env(qwen_dir=tmp_path / ".qwen", state_dir=tmp_path / "state",
                                                 state_url=url))

    team.source.configure(on(pg_url))
    team.running()
    left = Database(pg_url)
    assert left.listener.kinds  # the keys' notices heard while it is the one
    team.source._stop()
    try:
        assert left.listener.kinds == {} and left.listener.task is None
    finally:
        await close_pools()


async def test_spend_that_cannot_be_written_at_shutdown_is_said_with_what_it_loses(tmp_path, team, caplog):
    """A shared database that does not answer at shutdown: the spend is lost with the process, and the log says
    how much (it was swallowed)."""
    from helpers.procs import free_port

    url = f"postgresql://qwen@127.0.0.1:{free_port()}/nowhere"  # nothing listens there
    team.source.configure(Config(auth=AuthSettings.from_env(qwen_dir=tmp_path / ".qwen", state_dir=tmp_path / "state",
                                                            state_url=url)))
    team.book.charge("alice", requests=2, tokens=5)
    with caplog.at_level(logging.WARNING, "qwen"):
        await team.source.close()
    await close_pools()
    said = [r.getMessage() for r in caplog.records if "at shutdown" in r.getMessage()]
    assert len(said) == 1 and "the spend of 2 requests lost" in said[0], said
