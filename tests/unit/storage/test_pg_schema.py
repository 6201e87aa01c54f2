"""A shared database's migrations (storage/pg_schema.py), over a stand-in connection that records the statements:
each component's steps run once, in order, from where `schema_version` says it got, under the advisory lock,
in one transaction. tests/unit/storage/test_shared_state.py and the stores' tests run them on PostgreSQL."""

from __future__ import annotations

import contextlib

import pytest

from qwen_gateway.storage.pg_schema import migrate_sync

LOCK = "SELECT pg_advisory_xact_lock(%s)"
TABLE = "CREATE TABLE IF NOT EXISTS schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
READ = "SELECT version FROM schema_version WHERE component=%s"
SAVE = ("INSERT INTO schema_version VALUES (%s, %s) ON CONFLICT (component) DO UPDATE SET "
        "version = EXCLUDED.version")


class Cursor:
    def __init__(self, row) -> None:
        self.row = row

    def fetchone(self):
        return self.row


class Conn:
    """schema_version as a dict; every statement recorded, with whether a transaction was open."""

    def __init__(self, versions: dict[str, int] | None = None, fail_on: str | None = None) -> None:
        self.versions = dict(versions or {})
        self.fail_on = fail_on
        self.log: list[tuple[str, tuple, bool]] = []
        self.in_tx = False
        self.rolled_back = False

    @contextlib.contextmanager
    def transaction(self):
        saved = dict(self.versions)
        self.in_tx = True
        try:
            yield
        except BaseException:
            self.versions, self.rolled_back = saved, True
            raise
        finally:
            self.in_tx = False

    def execute(self, sql: str, args: tuple = ()):
        self.log.append((sql, tuple(args), self.in_tx))
        if sql == self.fail_on:
            raise RuntimeError(f"failed: {sql}")
        if sql == READ:
            return Cursor((self.versions[args[0]],) if args[0] in self.versions else None)
        if sql == SAVE:
            self.versions[args[0]] = args[1]
        return Cursor(None)


def test_a_new_component_runs_every_step_in_order_under_the_lock():
    conn = Conn()
    assert migrate_sync(conn, "keys", ["CREATE TABLE a (x INT)", "CREATE TABLE b (y INT)"]) == 2
    assert conn.log == [
        (LOCK, (0x7177_6E00,), True), (TABLE, (), True), (READ, ("keys",), True),
        ("CREATE TABLE a (x INT)", (), True), (SAVE, ("keys", 1), True),
        ("CREATE TABLE b (y INT)", (), True), (SAVE, ("keys", 2), True)]
    assert conn.versions == {"keys": 2}


def test_only_the_steps_a_component_lacks_run():
    conn = Conn({"keys": 1, "affinity": 5})
    assert migrate_sync(conn, "keys", ["step 1", "step 2", "step 3"]) == 3
    assert [sql for sql, _, _ in conn.log[3:]] == ["step 2", SAVE, "step 3", SAVE]
    assert conn.versions == {"keys": 3, "affinity": 5}  # another component's version untouched


def test_an_up_to_date_component_runs_nothing():
    conn = Conn({"keys": 2})
    assert migrate_sync(conn, "keys", ["step 1", "step 2"]) == 2
    assert [sql for sql, _, _ in conn.log] == [LOCK, TABLE, READ]


def test_a_failing_step_rolls_the_whole_migration_back():
    conn = Conn({"keys": 1}, fail_on="step 3")
    with pytest.raises(RuntimeError, match="step 3"):
        migrate_sync(conn, "keys", ["step 1", "step 2", "step 3"])
    assert conn.rolled_back and conn.versions == {"keys": 1}  # step 2's version not kept either
