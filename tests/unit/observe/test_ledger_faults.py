"""The usage ledger under every kind of storage failure, each caused for real on a real PostgreSQL (and SQLite): a
database that turns read-only before the ledger's migration, a locked SQLite file; whatever the driver raises
when it cannot connect (an unknown option, a host name the resolver refuses, a socket's error); and the failures
that are no storage fault — a column the table lost (a bug), a row the table refuses, a file that is no
database, a client's NUL character. What the gateway promises (docs/reliability.md, "Storage"): a storage
failure keeps the rows, says so once and writes them when the storage is back; any other failure loses no row
either — one line with its traceback, the rows that fail alone held back and written once the fault is mended,
never taking the good rows of their batch with them. The disk-full and hung-database cases through real
gateways: tests/e2e/test_e2e_storage_full.py and tests/e2e/test_e2e_storage_hung.py."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time

import pytest

from helpers.observe_testlib import exchange
from helpers.pgserver import pg_own, pg_server, pg_url  # noqa: F401  (fixtures)
from qwen_gateway.settings.auth import AuthSettings
from qwen_gateway.settings.config import Config
from qwen_gateway.observe.ledger import UsageLedger
from qwen_gateway.storage.health import local_fault
from qwen_gateway.storage.pg import unavailable
from qwen_gateway.storage.pg_faults import cause


def _sql(url: str, sql: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(sql)
        return cur.fetchone()[0] if cur.description else 0


def _rows(url: str) -> int:
    try:
        return _sql(url, "SELECT count(*) FROM usage")
    except Exception:  # noqa: BLE001  (the table not there yet)
        return -1


async def _until(check, what: str, limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {limit} s")
        await asyncio.sleep(0.05)


def _ledger(tmp_path, url: str | None = None) -> UsageLedger:
    led = UsageLedger()
    led.configure(Config(auth=AuthSettings.from_env(state_dir=tmp_path / "state", state_url=url)))
    return led


async def _batch(led: UsageLedger, n: int, **kw) -> None:
    for _ in range(n):
        led.finished(exchange(**kw), None)
    await led.flush()


def _tracebacks(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info]


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_database_read_only_from_the_migration_on_keeps_the_rows_and_writes_them_later(pg_own, tmp_path,
                                                                                                caplog):
    name = pg_own.db.rsplit("/", 1)[1]
    _sql(pg_own.url(), f"ALTER DATABASE {name} SET default_transaction_read_only = on")  # every new session
    led = _ledger(tmp_path, pg_own.db)
    try:
        await _batch(led, 3)  # the first write: the migration's CREATE TABLE fails (ReadOnlySqlTransaction)
        await _batch(led, 2)
        assert led.health is not None and led.health.down and len(led._rows) == 5  # kept, not dropped
        await asyncio.sleep(1.0)  # the probe (a write) keeps finding it read-only: still down, no new line
        assert led.health.down
        _sql(pg_own.url(), f"ALTER DATABASE {name} RESET default_transaction_read_only")
        await _until(lambda: _rows(pg_own.db) == 5, "the rows written once the database takes writes")
    finally:
        led.done()
    assert _tracebacks(caplog) == []
    lines = _warnings(caplog)
    assert len(lines) == 1 and "is unavailable (ReadOnlySqlTransaction)" in lines[0], lines


@pytest.fixture
def soon(monkeypatch):
    """Rows held back are tried again every 0.3 s (60 s in a gateway)."""
    monkeypatch.setattr(UsageLedger, "HELD_RETRY_S", 0.3)


def _errors(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_column_the_table_lost_is_one_line_with_its_traceback_and_its_rows_written_once_it_is_back(
        pg_own, tmp_path, caplog, soon):
    caplog.set_level(logging.INFO, "qwen")
    led = _ledger(tmp_path, pg_own.db)
    try:
        await _batch(led, 1)
        assert _rows(pg_own.db) == 1
        _sql(pg_own.db, "ALTER TABLE usage DROP COLUMN cost_unit")  # a bug: the INSERT names a column not there
        await _batch(led, 3)
        await _batch(led, 2)  # waits for the retry: the ledger wrote nothing the last time
        assert len(led._held) + len(led._rows) == 5  # kept, not dropped
        assert led.health is not None and not led.health.down  # no outage: the storage works
        _sql(pg_own.db, "ALTER TABLE usage ADD COLUMN cost_unit TEXT")
        # the rows are seen once committed; the ledger says so after its write returns (seen in CI: read before)
        await _until(lambda: _rows(pg_own.db) == 6 and "wrote the rows it held back" in caplog.text,
                     "the held rows written once the column is back, and said")
    finally:
        led.done()
    errors = _errors(caplog)
    assert len(errors) == 1 and errors[0].exc_info, [r.getMessage() for r in errors]
    assert "UndefinedColumn" in errors[0].getMessage() and "Not a storage fault" in errors[0].getMessage()
    assert "wrote the rows it held back" in caplog.text and "could not be written" not in caplog.text


async def test_a_row_the_table_refuses_does_not_take_its_batch_with_it(pg_own, tmp_path, caplog, soon):
    led = _ledger(tmp_path, pg_own.db)
    try:
        await _batch(led, 1)
        _sql(pg_own.db, "ALTER TABLE usage ADD CONSTRAINT no_poison CHECK (model IS DISTINCT FROM 'poison')")
        for i in range(5):
            led.finished(exchange(model="poison" if i == 2 else "gpt-4o"), None)
        await led.flush()
        assert _rows(pg_own.db) == 1 + 4 and len(led._held) == 1  # the other four at once
        await _batch(led, 2)  # good rows go on being written meanwhile
        assert _rows(pg_own.db) == 1 + 4 + 2
        _sql(pg_own.db, "ALTER TABLE usage DROP CONSTRAINT no_poison")  # the operator's mistake mended
        await _until(lambda: _rows(pg_own.db) == 8, "the refused row written at its retry")
        _sql(pg_own.db, "ALTER TABLE usage ADD CONSTRAINT no_venom CHECK (model IS DISTINCT FROM 'venom')")
        led.finished(exchange(model="venom"), None)
        await led.flush()
    finally:
        led.done()
    assert len(_tracebacks(caplog)) == 2 and "CheckViolation" in caplog.text  # one per time it failed anew
    assert "1 usage rows could not be written" in caplog.text  # still refused at shutdown: counted


class _Fails:
    """`psycopg.connect` raising `error` while `on` (the probe connects through it too): what a URL libpq takes
    but cannot use, or a resolver's refusal, does at every connection."""

    def __init__(self, monkeypatch, error: BaseException) -> None:
        import psycopg

        self.on, self.error, self.real = True, error, psycopg.connect
        monkeypatch.setattr(psycopg, "connect", self)

    def __call__(self, *args, **kw):
        if self.on:
            raise self.error
        return self.real(*args, **kw)


def _connection_errors() -> list:
    import psycopg

    return [psycopg.ProgrammingError('invalid URI query parameter: "colour"'), UnicodeError("label too long"),
            OSError(113, "No route to host"), psycopg.InterfaceError("closed"), psycopg.NotSupportedError("x"),
            psycopg.errors.InvalidAuthorizationSpecification("role does not exist"), psycopg.DataError("x"),
            ValueError("a value psycopg refused")]


@pytest.mark.parametrize("error", _connection_errors(), ids=lambda e: type(e).__name__)
async def test_whatever_the_driver_raises_when_connecting_is_an_outage_that_keeps_the_rows(
        pg_url, tmp_path, caplog, monkeypatch, error):
    """Before (issue 50): ProgrammingError and UnicodeError were taken for bugs, the rows dropped."""
    fails = _Fails(monkeypatch, error)
    led = _ledger(tmp_path, pg_url)
    try:
        await _batch(led, 3)
        await _batch(led, 2)
        assert led.health is not None and led.health.down and len(led._rows) == 5
        assert led.health.reason == cause(error)  # its class, or what it says (storage/pg_faults.py)
        fails.on = False
        await _until(lambda: _rows(pg_url) == 5, "the rows written once it connects")
    finally:
        led.done()
    assert _tracebacks(caplog) == []
    lines = _warnings(caplog)
    assert len(lines) == 1 and f"is unavailable ({cause(error)})" in lines[0], lines


def _statement_errors(where: str) -> list:
    import psycopg

    if where == "local":
        return [sqlite3.ProgrammingError("x"), sqlite3.IntegrityError("x"), sqlite3.DataError("x"),
                sqlite3.DatabaseError("database disk image is malformed"), TypeError("a bug"),
                UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")]
    return [psycopg.ProgrammingError("x"), psycopg.errors.UndefinedTable("x"), psycopg.IntegrityError("x"),
            psycopg.DataError("x"), psycopg.NotSupportedError("x"), TypeError("a bug"),
            UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")]


@pytest.mark.parametrize("where, error", [(w, e) for w in ("local", "shared") for e in _statement_errors(w)],
                         ids=lambda v: v if isinstance(v, str) else type(v).__name__)
async def test_whatever_a_write_raises_that_is_no_storage_fault_its_rows_are_held_and_written_later(
        pg_url, tmp_path, caplog, monkeypatch, soon, where, error):
    from qwen_gateway.observe.ledger import Ledger, SharedLedger

    kind = Ledger if where == "local" else SharedLedger
    real, failing = kind.add, [True]

    def add(self, rows):
        if failing[0]:
            raise error
        real(self, rows)

    monkeypatch.setattr(kind, "add", add)
    led = _ledger(tmp_path, pg_url if where == "shared" else None)
    try:
        await _batch(led, 3)
        await _batch(led, 2)
        assert len(led._held) + len(led._rows) == 5  # none dropped
        failing[0] = False
        await _until(lambda: led.ledger().query("SELECT count(*) FROM usage")[0][0] == 5, "the held rows written")
    finally:
        led.done()
    errors = _errors(caplog)
    assert len(errors) == 1 and errors[0].exc_info and type(error).__name__ in errors[0].getMessage()
    assert "could not be written" not in caplog.text


async def test_a_ledger_file_that_is_no_database_keeps_its_rows_and_is_not_tried_for_every_batch(
        tmp_path, caplog, monkeypatch, soon):
    from qwen_gateway.observe import ledger

    path = tmp_path / "state" / "usage.sqlite3"
    path.parent.mkdir(mode=0o700)
    path.write_bytes(b"not a database, " * 512)
    opened = []
    real = ledger.Ledger.__init__

    def counted(self, p):
        opened.append(p)
        real(self, p)

    monkeypatch.setattr(ledger.Ledger, "__init__", counted)
    led = _ledger(tmp_path)
    try:
        await _batch(led, 3)
        for _ in range(5):
            await _batch(led, 1)
        assert len(opened) == 1 and len(led._held) + len(led._rows) == 8  # kept; no new try before the retry
        path.unlink()  # mended: the next retry makes a new ledger
        await _until(lambda: path.exists() and led.ledger().query("SELECT count(*) FROM usage")[0][0] == 8,
                     "the rows written at the retry")
    finally:
        led.done()
    errors = _errors(caplog)
    assert len(errors) == 1 and "DatabaseError" in errors[0].getMessage(), [r.getMessage() for r in errors]


@pytest.mark.parametrize("where", ["local", "shared"])
async def test_a_nul_in_a_clients_model_name_is_stored_with_its_batch(pg_own, tmp_path, caplog, where):
    led = _ledger(tmp_path, pg_own.db if where == "shared" else None)
    try:
        for model in ("gpt-4o", "gpt\x00-4o", "gpt-4o"):
            led.finished(exchange(model=model), None)
        await led.flush()
        assert led.ledger().query("SELECT count(*) FROM usage")[0][0] == 3
    finally:
        led.done()
    assert _tracebacks(caplog) == []


async def test_a_locked_ledger_file_keeps_the_rows_and_writes_them_when_it_is_free(tmp_path, caplog, monkeypatch):
    from qwen_gateway.observe import ledger

    monkeypatch.setattr(ledger, "BUSY_S", 0.5)  # the wait for another process, shorter than the 10 s it is
    led = _ledger(tmp_path)
    await _batch(led, 1)
    holder = sqlite3.connect(tmp_path / "state" / "usage.sqlite3", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # another process writing for longer than the ledger waits (BUSY_S)
        await _batch(led, 2)
        assert led.health is not None and led.health.down and len(led._rows) == 2
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    await _until(lambda: led.ledger().query("SELECT count(*) FROM usage")[0][0] == 3, "the kept rows written")
    led.done()
    assert _tracebacks(caplog) == []
    assert caplog.text.count("is unavailable (locked)") == 1


@pytest.mark.parametrize("state, outage", [
    ("53100", True), ("53200", True), ("53300", True),  # disk full, out of memory, too many connections
    ("57P01", True), ("57P03", True), ("57014", True),  # admin shutdown, cannot connect now, statement timeout
    ("58030", True), ("08006", True), ("25006", True),  # I/O error, connection failure, read-only
    ("40001", True), ("55P03", True),  # serialization failure, lock not available: tried again later
    ("42703", False), ("42P01", False), ("23514", False), ("22021", False), ("54000", False),  # statements' faults
])
def test_which_database_errors_are_storage_faults(state, outage):
    import psycopg

    assert unavailable(psycopg.errors.lookup(state)("x")) is outage
    assert unavailable(psycopg.OperationalError("connection failed")) and unavailable(psycopg.InterfaceError("closed"))
    assert not unavailable(ValueError("not a database error"))


@pytest.mark.parametrize("message, fault", [
    ("database or disk is full", "disk full"), ("attempt to write a readonly database", "not writable"),
    ("disk I/O error", "disk I/O error"), ("database is locked", "locked"), ("no such column: x", None),
])
def test_which_sqlite_errors_are_storage_faults(message, fault):
    assert local_fault(sqlite3.OperationalError(message)) == fault
