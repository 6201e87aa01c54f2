"""Storage faults, each caused for real: a PostgreSQL restarted (`pg_ctl restart`: fast shutdown, every session
ended with AdminShutdown) or stopped for an outage, under every writer of the shared state; and the local
Responses store's work per write counted. What the gateway promises: rows produced during an outage are kept
and written after it (or counted dropped with one line), no traceback, and what needs the database answers
503 `state_unavailable` at once while it is away. The same faults through real gateways:
tests/e2e/test_e2e_storage_faults.py."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from helpers.observe_testlib import exchange
from helpers.pgserver import pg_own  # noqa: F401  (fixture)
from qwen_gateway.storage.pg_tasks import close_pools
from qwen_gateway.stores.responses_pg import SharedResponseStore
from qwen_gateway.auth.state_pg import SharedAccountState
from qwen_gateway.settings.auth import AuthSettings
from qwen_gateway.settings.config import Config
from qwen_gateway.errors import gateway_error
from qwen_gateway.observe.ledger import UsageLedger
from qwen_gateway.storage.health import StateUnavailable
from qwen_gateway.storage.pg import Database
from qwen_gateway.upstream.qwenweb.pins_pg import SharedPinStore


@pytest.fixture(autouse=True)
async def _pools_closed():
    """Every pool a test opened, closed in its event loop: psycopg_pool's workers would keep the loop's end
    waiting (storage/pg_tasks.py)."""
    yield
    await close_pools()


@pytest.fixture
def pg(pg_own):
    """The test's own PostgreSQL (it stops and restarts it)."""
    return pg_own


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
    opened = [line for line in lines if " is unavailable (" in line]
    assert len(opened) == 1, lines  # one line for the whole outage, naming the database, not a file
    assert f"127.0.0.1:{pg.port}" in opened[0] and "usage.sqlite3" not in opened[0]
    # besides: its cause when it changed, once each (a busy machine's probe may see the server starting up)
    changed = [line for line in lines if line not in opened]
    assert all(" is still unavailable, now " in line for line in changed) and len(set(changed)) == len(changed), lines


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
        write = a.put({"id": "resp_1", "output": []}, {"items": []}, owner="")
        assert write is not None
        await write
        await b.load(["resp_0"], "")  # b's pool holds a connection now
        pg.halt()
        pg.resume()
        await b.load(["resp_1"], "")  # through connections the restart ended: a fresh one, no AdminShutdown
        assert b.get("resp_1", "") == {"id": "resp_1", "output": []}
        pg.halt()
        for reader in (lambda: b.load(["resp_2"], ""), b.ready, b.check):
            with pytest.raises(StateUnavailable) as e:  # the gateway's 503 state_unavailable (errors.py)
                await reader()
            assert gateway_error(e.value).status == 503 and gateway_error(e.value).code == "state_unavailable"
            assert "database" in e.value.message and "PoolTimeout" not in e.value.message
        write = a.put({"id": "resp_3", "output": []}, {"items": []}, owner="")
        assert write is not None
        with pytest.raises(StateUnavailable):
            await write
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


# ---- the local Responses store: its write off the event loop, in O(1) work -------------------------------


class _Work:
    """Counts what the store's SQLite connections do: every VM instruction while `counting` (a progress
    handler called at each one), and the thread of every statement that writes."""

    def __init__(self) -> None:
        self.steps = 0
        self.writers: set[int] = set()
        self.connections: list = []

    def watch(self, db):
        import threading

        def statement(sql: str) -> None:
            if sql.lstrip().upper().startswith(("INSERT", "DELETE", "UPDATE")):
                self.writers.add(threading.get_ident())

        db.set_trace_callback(statement)
        self.connections.append(db)
        return db

    @property
    def counting(self) -> bool:
        return False

    @counting.setter
    def counting(self, on: bool) -> None:
        def step() -> int:
            self.steps += 1
            return 0

        for db in self.connections:
            db.set_progress_handler(step if on else None, 1)


async def _steps_per_put(tmp_path, monkeypatch, cap: int, work: _Work) -> float:
    from qwen_gateway.stores import responses as store_mod

    real = store_mod.open_private_db
    monkeypatch.setattr(store_mod, "open_private_db", lambda *a, **kw: work.watch(real(*a, **kw)))
    st = store_mod.ResponseStore(tmp_path / f"cap{cap}" / "responses.sqlite3", per_key=cap)
    item = {"type": "message", "role": "user", "content": "x" * 200}

    async def put(i: int, owner: str = "carol") -> None:
        write = st.put({"id": f"resp_{owner}_{i}", "output": [{"id": f"msg_{i}", "type": "message"}]},
                       {"items": [item]}, [{"id": f"in_{i}", **item}], owner=owner)
        if write is not None:
            await write

    for i in range(cap):  # another key's, at its cap too: carol's writes never touch them
        await put(i, "dave")
    for i in range(cap + 10):  # carol's filled to her cap: every put now trims one of hers
        await put(i)
    work.steps, work.counting = 0, True
    for i in range(cap + 10, cap + 30):
        await put(i)
    work.counting = False
    assert st.get(f"resp_carol_{cap + 29}", "carol") is not None and st.get("resp_carol_0", "carol") is None
    assert st.get("resp_dave_0", "dave") is not None
    return work.steps / 20


async def test_a_local_store_write_runs_off_the_event_loop_in_work_that_does_not_grow_with_the_store(
        tmp_path, monkeypatch):
    import threading

    small, large = _Work(), _Work()
    at_100 = await _steps_per_put(tmp_path, monkeypatch, 100, small)
    at_2000 = await _steps_per_put(tmp_path, monkeypatch, 2000, large)
    # the same work per write whether the store holds 100 responses or 2,000 (a trim that scans them all
    # costs about 20 times more at 2,000)
    assert at_2000 < 1.5 * at_100, (at_100, at_2000)
    assert threading.get_ident() not in small.writers | large.writers  # no write on the event loop's thread


# ---- an OAuth refresh while the database is away ------------------------------------------------------------


async def test_a_refresh_that_needs_the_database_while_it_is_away_makes_the_account_unavailable(pg, tmp_path):
    """One refresher across machines takes the account's lock in the database: with the database away the
    refresh waits (the account is unavailable for a while, the others serve), it never runs unguarded and
    never surfaces as a storage error (a 500)."""
    from helpers.procs import free_port, write_creds
    from qwen_gateway.accounts import AccountUnavailable
    from qwen_gateway.auth.oauth_account import OAuthAccount

    state = await _state(pg.db)
    path = write_creds(tmp_path / ".qwen", access_token="old", refresh_token="rt", resource_url=None,
                       expires_in=-60)  # expired: the next credential() refreshes
    settings = AuthSettings.from_env(qwen_dir=tmp_path / ".qwen", state_dir=tmp_path / "state",
                                     oauth_base_url=f"http://127.0.0.1:{free_port()}", state_url=pg.db)
    try:
        pg.halt()
        with pytest.raises(AccountUnavailable, match="database"):
            await OAuthAccount("default", path, settings, state).credential()
    finally:
        state.close()
        await state.db.aclose()


def test_health_names_a_storage_while_it_is_down(tmp_path):
    """/health says which storage is unavailable and why (status stays "ok": chat is served), and drops the
    entry once the probe sees it back."""
    from qwen_gateway.storage.health import local_health
    from qwen_gateway.local_answers import health

    def local_entries() -> list[dict]:
        return [s for s in health(None).get("storage", []) if s["name"] == "local storage"]

    before = len(local_entries())  # another test's folder may be down meanwhile (one Health per process)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    folder = blocker / "state"  # under a file: never writable
    local_health(folder).lost("not writable")
    shown = health(None)
    assert shown["status"] == "degraded"  # no account here: the status is the accounts', not the storage's
    entries = local_entries()
    assert len(entries) == before + 1 and ("not writable", "unavailable") in \
        [(s["reason"], s["state"]) for s in entries], shown
    assert all(isinstance(s["for_s"], float) for s in entries) and str(folder) not in str(shown)  # no paths
    blocker.unlink()
    deadline = time.monotonic() + 10
    while len(local_entries()) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(local_entries()) == before


@pytest.mark.parametrize("where", ["local", "shared"])
def test_a_batch_written_again_is_counted_once(pg, tmp_path, where):
    """A COMMIT the server carried out but whose answer never came (it was shutting down: the client reads
    AdminShutdown) leaves the batch kept, and written again once the database is back. Each row carries its
    exchange's id and is taken once (CI once found one row more than exchanges after a PostgreSQL restart)."""
    from qwen_gateway.observe.ledger import row_of

    led = UsageLedger()
    led.configure(Config(auth=AuthSettings.from_env(state_dir=tmp_path / "state",
                                                    state_url=pg.db if where == "shared" else None)))
    try:
        rows = [row_of(exchange()) for _ in range(3)]
        led.ledger().add(rows)
        led.ledger().add(rows + [row_of(exchange())])  # the same batch again, with a row that came meanwhile
        count = led.ledger().query("SELECT count(*) FROM usage")[0][0]
        assert count == 4
    finally:
        led.done()
