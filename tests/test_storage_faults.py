"""Storage faults, each caused for real: a PostgreSQL restarted (`pg_ctl restart`: fast shutdown, every session
ended with AdminShutdown) or stopped for an outage, under every writer of the shared state; and the local
Responses store's work per write counted. What the gateway promises: rows produced during an outage are kept
and written after it (or counted dropped with one line), no traceback, and what needs the database answers
503 `state_unavailable` at once while it is away. The same faults through real gateways:
tests/test_e2e_storage_faults.py."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from helpers.observe_testlib import exchange
from helpers.pgserver import PgServer, unavailable
from qwen_gateway.api.responses.store_pg import SharedResponseStore
from qwen_gateway.auth.pg import Database
from qwen_gateway.auth.settings import AuthSettings
from qwen_gateway.auth.state_pg import SharedAccountState
from qwen_gateway.config import Config
from qwen_gateway.errors import GatewayError
from qwen_gateway.observe.ledger import UsageLedger
from qwen_gateway.upstream.qwenweb.pins_pg import SharedPinStore


@pytest.fixture
def pg():
    """A PostgreSQL server of the test's own (the test stops and restarts it), with one database."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    srv = PgServer().start()
    try:
        srv.db = srv.new_database()
        yield srv
    finally:
        srv.stop()


def _count(url: str, sql: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        return conn.execute(sql).fetchone()[0]


async def _until(check, what: str, limit: float = 15.0):
    """Polls `check` (a blocking probe runs in a thread) until it is true, at most `limit` seconds."""
    deadline = time.monotonic() + limit
    while True:
        value = await asyncio.to_thread(check)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {limit} s")
        await asyncio.sleep(0.05)


def _rows(url: str) -> int:
    try:
        return _count(url, "SELECT count(*) FROM usage")
    except Exception:  # noqa: BLE001  (the database away, or the table not there yet)
        return -1


def _no_tracebacks(caplog) -> None:
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


# ---- the usage ledger -----------------------------------------------------------------------------------


@pytest.fixture
def shared_ledger(pg, tmp_path):
    led = UsageLedger()
    led.configure(Config(auth=AuthSettings.from_env(state_dir=tmp_path / "state", state_url=pg.db)))
    yield led
    led.done()


async def test_the_shared_ledger_writes_again_after_a_restart(pg, shared_ledger, caplog):
    led = shared_ledger
    led.finished(exchange(), None)
    await led.flush()
    assert _rows(pg.db) == 1
    pg.halt()
    pg.resume()  # pg_ctl restart: the ledger's connection was ended by the server
    for _ in range(3):
        led.finished(exchange(), None)
    await led.flush()
    await _until(lambda: _rows(pg.db) == 4, "the rows after the restart written")
    _no_tracebacks(caplog)


async def test_rows_of_an_outage_are_kept_and_written_when_the_database_returns(pg, shared_ledger, caplog):
    caplog.set_level(logging.INFO, "qwen")
    led = shared_ledger
    led.finished(exchange(), None)
    await led.flush()
    pg.halt()
    for _ in range(5):  # five batches while the database is away
        led.finished(exchange(), None)
        await led.flush()
    assert _rows(pg.db) == -1
    pg.resume()
    await _until(lambda: _rows(pg.db) == 6, "the outage's rows written once the database is back")
    _no_tracebacks(caplog)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1, lines  # one line for the whole outage, naming the database, not a file
    assert f"127.0.0.1:{pg.port}" in lines[0] and "usage.sqlite3" not in lines[0]


# ---- request counts and account state --------------------------------------------------------------------


async def _state(url: str) -> SharedAccountState:
    state = SharedAccountState(Database(url))
    state.start()
    assert state.ready is not None
    await asyncio.wait_for(state.ready.wait(), 20)
    return state


def _requests(url: str, account: str) -> int:
    try:
        return _count(url, f"SELECT coalesce(sum(requests), 0) FROM account_day WHERE account='{account}'")
    except Exception:  # noqa: BLE001
        return -1


def _state_row(url: str, account: str) -> int:
    try:
        return _count(url, f"SELECT count(*) FROM account_state WHERE account='{account}' AND cooldown_until > 0")
    except Exception:  # noqa: BLE001
        return -1


async def test_request_counts_and_account_state_survive_a_restart_and_an_outage(pg, caplog):
    state = await _state(pg.db)
    try:
        state.count_request("acct")
        state.flush()
        await _until(lambda: _requests(pg.db, "acct") == 1, "the first count written")
        pg.halt()
        pg.resume()  # a restart: the pool's connections are dead
        state.count_request("acct")
        state.flush()
        await _until(lambda: _requests(pg.db, "acct") == 2, "a count after the restart written")
        pg.halt()  # an outage
        for _ in range(3):
            state.count_request("acct")
            state.flush()
        state.set("acct", cooldown_until=time.time() + 600, last_error="quota exhausted")
        await _until(lambda: not state.db.busy, "the failed writes over")
        assert state.requests_today("acct") >= 5 - 2  # this gateway still counts what it could not write
        pg.resume()
        await _until(lambda: _requests(pg.db, "acct") == 5, "the outage's counts written after it")
        await _until(lambda: _state_row(pg.db, "acct") == 1, "the outage's cooldown written after it")
    finally:
        state.close()
        await state.db.aclose()
    _no_tracebacks(caplog)


# ---- stored Responses --------------------------------------------------------------------------------------


async def test_stored_responses_are_read_after_a_restart_and_a_clear_503_during_an_outage(pg, tmp_path, caplog):
    a = SharedResponseStore(tmp_path / "a" / "responses.sqlite3", Database(pg.db))
    b = SharedResponseStore(tmp_path / "b" / "responses.sqlite3", Database(pg.db))
    try:
        await a.ready()
        await b.ready()
        write = a.put({"id": "resp_1", "output": []}, {"items": []})
        assert write is not None
        await write
        await b.load(["resp_0"])  # b's pool holds a connection now
        pg.halt()
        pg.resume()
        await b.load(["resp_1"])  # through connections the restart ended: a fresh one, no AdminShutdown
        assert b.get("resp_1") == {"id": "resp_1", "output": []}
        pg.halt()
        for reader in (lambda: b.load(["resp_2"]), b.ready):
            with pytest.raises(GatewayError) as e:
                await reader()
            assert e.value.status == 503 and e.value.code == "state_unavailable"
        write = a.put({"id": "resp_3", "output": []}, {"items": []})
        assert write is not None
        with pytest.raises(Exception) as failed:
            await write
        assert not isinstance(failed.value, asyncio.TimeoutError)
    finally:
        for store in (a, b):
            await store.db.aclose()
    _no_tracebacks(caplog)


# ---- web pins -----------------------------------------------------------------------------------------------


def _pins(url: str) -> int:
    try:
        return _count(url, "SELECT count(*) FROM web_pins")
    except Exception:  # noqa: BLE001
        return -1


async def test_a_web_pin_made_during_an_outage_is_shared_when_the_database_returns(pg, tmp_path, caplog):
    pins = SharedPinStore(tmp_path / "web_pins.sqlite3", 600, Database(pg.db))
    try:
        pins.put("k0", "chat-0", "resp-0", "digest", 2)
        await _until(lambda: _pins(pg.db) == 1, "the first pin shared")
        pg.halt()
        pins.put("k1", "chat-1", "resp-1", "digest", 2)
        await _until(lambda: not pins.db.busy, "the failed write over")
        pg.resume()
        await _until(lambda: _pins(pg.db) == 2, "the outage's pin shared after it")
    finally:
        pins.close()
        await pins.db.aclose()
    _no_tracebacks(caplog)
