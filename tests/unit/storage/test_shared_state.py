"""Shared state on PostgreSQL (qwen_state_url): the URL rule, the migration, and each store against both
backends (SQLite, the default, and a real PostgreSQL started by tests/helpers/pgserver.py)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from mitmproxy import exceptions

from helpers.observe_testlib import parsed_config
from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from qwen_gateway.storage.pg_tasks import close_pools
from qwen_gateway.api.responses.items import new_id
from qwen_gateway.stores.responses import ResponseStore, wanted_ids
from qwen_gateway.stores.responses_pg import SharedResponseStore
from qwen_gateway.auth.state import AccountState
from qwen_gateway.auth.state_pg import SharedAccountState
from qwen_gateway.cli import usage
from qwen_gateway.errors import GatewayError
from qwen_gateway.observe.ledger import Ledger, SharedLedger
from qwen_gateway.storage.pg import Database, StateUrlError, check_url, migrate_sync, placeholders, shown


@pytest.fixture(autouse=True)
async def _pools_closed():
    """Every pool a test opened, closed in its event loop: psycopg_pool's workers would keep the loop's end
    waiting (storage/pg_tasks.py)."""
    yield
    await close_pools()

# ---- the URL ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["postgresql://gw:s3cret@db.example:5432/qwen",
                                 "postgresql://gw@db.example/qwen?password=s3cret",
                                 "postgres://gw:@db.example/qwen"])
def test_a_url_with_a_password_is_refused_without_repeating_it(url):
    with pytest.raises(StateUrlError) as e:
        check_url(url)
    assert "s3cret" not in str(e.value) and "PGPASSFILE" in str(e.value)


def test_the_option_refuses_a_password_and_another_scheme_at_configure():
    with pytest.raises(exceptions.OptionsError, match="password") as e:
        parsed_config(qwen_state_url="postgresql://gw:s3cret@127.0.0.1/qwen")
    assert "s3cret" not in str(e.value)
    with pytest.raises(exceptions.OptionsError, match="postgresql://"):
        parsed_config(qwen_state_url="mysql://gw@127.0.0.1/qwen")
    assert parsed_config(qwen_state_url="postgresql://gw@127.0.0.1:5433/qwen").state_url.endswith(":5433/qwen")
    assert parsed_config().state_url == ""


def test_shown_keeps_user_host_port_and_database_only():
    assert shown("postgresql://gw@db:5433/qwen?sslkey=/k&application_name=x") == "postgresql://gw@db:5433/qwen"


def test_sqlite_placeholders_become_psycopg_ones_outside_literals():
    assert placeholders("SELECT a FROM t WHERE b=? AND c LIKE '%?%' LIMIT ?") == \
        "SELECT a FROM t WHERE b=%s AND c LIKE '%%?%%' LIMIT %s"


def test_wanted_ids_are_the_previous_response_and_item_references():
    body = {"previous_response_id": "resp_1", "input": [{"type": "item_reference", "id": "msg_2"},
                                                        {"type": "message", "id": "msg_3"}]}
    assert wanted_ids(body) == ["resp_1", "msg_2"]


# ---- the migration ------------------------------------------------------------------------------------


def test_two_gateways_migrating_at_once_take_turns(pg_url):
    import psycopg

    steps = ["CREATE TABLE a (x INT)", "CREATE TABLE b (y INT)", "ALTER TABLE a ADD COLUMN z TEXT"]
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def one() -> None:
        try:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                start.wait(10)
                migrate_sync(conn, "demo", steps)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT version FROM schema_version WHERE component='demo'").fetchone() == (3,)
        migrate_sync(conn, "demo", [*steps, "CREATE TABLE c (w INT)"])  # a newer gateway adds a step
        assert conn.execute("SELECT version FROM schema_version WHERE component='demo'").fetchone() == (4,)


# ---- the stores, on both backends ---------------------------------------------------------------------

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path):
    """(kind, factory of a gateway's state folder) — two "gateways" share the database, not the folder."""
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    return request.param, url


async def _until(check, what: str, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {limit} s")
        await asyncio.sleep(0.02)


async def _account_states(backend, tmp_path) -> tuple[AccountState, AccountState]:
    kind, url = backend
    if kind == "sqlite":
        return AccountState(tmp_path / "state.sqlite3"), AccountState(tmp_path / "state.sqlite3")
    a, b = SharedAccountState(Database(url)), SharedAccountState(Database(url))
    for s in (a, b):
        s.start()
        assert s.ready is not None
        await asyncio.wait_for(s.ready.wait(), 20)
    return a, b


async def test_account_state_changes_reach_the_other_gateway(backend, tmp_path):
    a, b = await _account_states(backend, tmp_path)
    try:
        assert b.get("acct")["cooldown_until"] == 0
        until = time.time() + 3600
        a.set("acct", cooldown_until=until, last_error="quota exhausted Bearer sk-abcdef0123456789abcdef")
        assert a.get("acct")["cooldown_until"] == until  # memory at once
        if backend[0] == "sqlite":
            b = AccountState(tmp_path / "state.sqlite3")  # SQLite: a process reads at first use
        await _until(lambda: b.get("acct")["cooldown_until"] == until, "the cooldown reaching b")
        assert "sk-abcdef" not in (b.get("acct")["last_error"] or "")
    finally:
        a.close()
        b.close()


async def test_request_counts_are_batched_and_summed_across_gateways(backend, tmp_path):
    a, b = await _account_states(backend, tmp_path)
    try:
        for _ in range(3):
            a.count_request("acct")
        b.count_request("acct")
        assert a.requests_today("acct") == 3  # its own pending counts, before any write
        a.flush()
        b.flush()
        if backend[0] == "postgres":
            assert isinstance(a, SharedAccountState)
            await _until(lambda: not a.db.busy and not b.db.busy, "the counts written")
            await a.reload()
        assert a.requests_today("acct") == 4
    finally:
        a.close()
        b.close()


def _stores(backend, tmp_path) -> tuple[ResponseStore, ResponseStore]:
    kind, url = backend
    if kind == "sqlite":
        store = ResponseStore(tmp_path / "a" / "responses.sqlite3")
        return store, store  # one gateway: one folder
    return (SharedResponseStore(tmp_path / "a" / "responses.sqlite3", Database(url)),
            SharedResponseStore(tmp_path / "b" / "responses.sqlite3", Database(url)))


async def test_a_stored_response_is_continued_and_read_through_the_other_gateway(backend, tmp_path):
    a, b = _stores(backend, tmp_path)
    await a.ready()
    await b.ready()
    reasoning = a.sealer.seal("reasoning", {"text": "thought"})
    response = {"id": "resp_1", "object": "response", "output": [{"id": "msg_1", "type": "message"}]}
    write = a.put(response, {"items": [{"type": "message", "role": "user", "content": "hi"}]},
                  [{"id": "in_1", "type": "message", "role": "user", "content": "hi"}], owner="")
    if write is not None:
        await write  # committed: what the answer waits for
    body = {"previous_response_id": "resp_1", "input": [{"type": "item_reference", "id": "in_1"}]}
    await b.load(wanted_ids(body), "")
    assert b.get("resp_1", "") == response
    assert b.continuation(body, "") == {"history": [{"type": "message", "role": "user", "content": "hi"}]}
    assert b.item("msg_1", "") == {"id": "msg_1", "type": "message"}
    assert b.inputs("resp_1", "") == [{"id": "in_1", "type": "message", "role": "user", "status": "completed",
                                       "content": [{"type": "input_text", "text": "hi"}]}]  # as the spec lists it
    assert b.sealer.open("reasoning", reasoning) == {"text": "thought"}  # one sealing key for both
    with pytest.raises(GatewayError, match="not found"):
        await b.load(["resp_unknown"], "")
        b.continuation({"previous_response_id": "resp_unknown"}, "")


async def test_an_input_item_without_an_id_is_found_through_the_other_gateway_by_its_listed_id(backend, tmp_path):
    """Such an item has no row of its own (stores/responses_rows.py): its id names its response and place,
    and the other gateway fetches that response to find it."""
    a, b = _stores(backend, tmp_path)
    await a.ready()
    await b.ready()
    rid = new_id("resp")
    write = a.put({"id": rid, "object": "response", "output": []}, {"items": []},
                  lambda: [{"role": "user", "content": "first"}, {"role": "user", "content": "second"}], owner="")
    if write is not None:
        await write
    listed = a.inputs(rid, "")[1]["id"]
    await b.load(wanted_ids({"input": [{"type": "item_reference", "id": listed}]}), "")
    assert b.item(listed, "") == {"role": "user", "content": "second", "id": listed}
    assert [i["id"] for i in b.inputs(rid, "")] == [i["id"] for i in a.inputs(rid, "")]
    await b.load([listed], "other")
    assert b.item(listed, "other") is None  # another key's: found nowhere


async def test_a_deleted_response_is_gone_for_both(backend, tmp_path):
    a, b = _stores(backend, tmp_path)
    await a.ready()
    write = a.put({"id": "resp_2", "output": []}, {"items": []}, owner="")
    if write is not None:
        await write
    assert await b.delete("resp_2", "")  # b never read it: the database says it was there
    assert not await b.delete("resp_2", "")
    fresh, _ = _stores(backend, tmp_path / "c")  # at once: the delete is committed before it is answered
    await fresh.load(["resp_2"], "")
    assert fresh.get("resp_2", "") is None


def _ledger(backend, tmp_path) -> Ledger | SharedLedger:
    kind, url = backend
    return Ledger(tmp_path / "usage.sqlite3") if kind == "sqlite" else SharedLedger(Database(url))


def test_the_ledger_takes_rows_from_two_gateways_and_qwen_usage_reads_them(backend, tmp_path):
    day = time.strftime("%Y-%m-%d")
    row = {"ts": time.time(), "day": day, "endpoint": "chat.completions", "model": "gpt-4o",
           "upstream_model": "qwen3-coder-plus", "account": "a", "status": 200, "prompt_tokens": 5,
           "completion_tokens": 7, "stream": 0, "retries": 0}
    one, two = _ledger(backend, tmp_path), _ledger(backend, tmp_path)
    one.add([row, {**row, "status": 503, "error": "quota"}])
    two.add([{**row, "account": "b"}])
    reader = _ledger(backend, tmp_path)
    try:
        rows = {r["account"]: r for r in usage.report(reader, "accounts")}
        assert rows["a"]["requests"] == 2 and rows["a"]["errors"] == 1 and rows["a"]["prompt_tokens"] == 10
        assert rows["b"]["requests"] == 1
        assert [r["account"] for r in usage.recent(reader, usage.Filters(account="b"))] == ["b"]
    finally:
        for led in (one, two, reader):
            led.close()


def test_a_batch_over_one_insert_is_written_whole_and_once(backend, tmp_path):
    """A batch is a few INSERTs of power-of-two sizes (not one per row): 2,500 rows take nine, and a batch
    written again (its storage failed after the commit) is still taken once, row by row."""
    rows = [{"ts": time.time(), "day": time.strftime("%Y-%m-%d"), "account": "a", "status": 200,
             "endpoint": "chat.completions", "xid": f"x{i}"} for i in range(2_500)]
    led = _ledger(backend, tmp_path)
    try:
        led.add(rows)
        led.add(rows[-10:] + [{**rows[0], "xid": "new"}])
        assert led.query("SELECT COUNT(*), COUNT(DISTINCT xid) FROM usage") == [(2_501, 2_501)]
    finally:
        led.close()


def test_qwen_usage_reads_the_shared_ledger_by_url(pg_url, capsys, monkeypatch):
    led = SharedLedger(Database(pg_url))
    led.add([{"ts": time.time(), "day": time.strftime("%Y-%m-%d"), "account": "acct-x", "status": 200,
              "endpoint": "responses", "model": "gpt-4o", "prompt_tokens": 3, "completion_tokens": 4}])
    led.close()
    monkeypatch.setenv("QWEN_STATE_URL", pg_url)
    assert usage.main(["accounts", "--json"]) == 0
    assert [r["account"] for r in __import__("json").loads(capsys.readouterr().out)] == ["acct-x"]


def test_qwen_usage_refuses_a_url_with_a_password(capsys):
    with pytest.raises(SystemExit):
        usage.main(["--state-url", "postgresql://u:hunter2@127.0.0.1/x"])
    err = capsys.readouterr().err
    assert "password" in err and "hunter2" not in err


# ---- a stream's final events wait for the answer to be kept ------------------------------------------

def _rewriter():
    from qwen_gateway.api.responses.stream import ResponsesStreamTranslator
    from qwen_gateway.turn.stream_rewriter import StreamRewriter
    from qwen_gateway.upstream.dashscope.stream import ChunkNormalizer

    return StreamRewriter(ChunkNormalizer("gpt-4o"),
                          ResponsesStreamTranslator({"model": "gpt-4o"}, response_id="resp_x", created_at=1))


def _sse(obj) -> bytes:
    return b"data: " + __import__("json").dumps(obj).encode() + b"\n\n"


def test_a_parked_stream_holds_its_final_events_until_the_relayed_stream_ends():
    rw = _rewriter()
    parked: list[bool] = []
    rw.park = lambda: parked.append(rw.error is None)
    chunk = {"id": "c", "object": "chat.completion.chunk", "model": "qwen",
             "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}
    last = {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    early = b"".join(rw(_sse(chunk) + _sse(last) + b"data: [DONE]\n\n"))
    assert b"response.output_text.delta" in early and b"response.completed" not in early
    assert parked == [True] and rw.held  # the write starts now; the events wait for the end
    assert b"response.completed" in b"".join(rw(b""))
    assert rw.held is None


def test_a_failed_stream_is_not_parked_and_opens_the_gate_at_once():
    rw = _rewriter()
    parked: list[bool] = []
    rw.park = lambda: parked.append(rw.error is None)
    out = b"".join(rw(_sse({"error": {"message": "boom", "code": "InternalError"}})))
    assert b"response.failed" in out and parked == [False] and rw.held is None


# ---- web pins ----------------------------------------------------------------------------------------

async def test_a_web_pin_made_by_one_gateway_is_continued_and_dropped_on_the_other(backend, tmp_path):
    from qwen_gateway.upstream.qwenweb.pins import PinStore
    from qwen_gateway.upstream.qwenweb.pins_pg import SharedPinStore

    kind, url = backend
    if kind == "sqlite":
        a = b = PinStore(tmp_path / "web_pins.sqlite3", ttl=60)
    else:
        a = SharedPinStore(tmp_path / "a" / "web_pins.sqlite3", 60, Database(url))
        b = SharedPinStore(tmp_path / "b" / "web_pins.sqlite3", 60, Database(url))
        b.start()
    try:
        await _until(lambda: _listening(b), "b's listener ready")
        pin = a.put("k1", "chat-1", "resp-1", "digest", 2)
        await _until(lambda: b.get("k1") == pin, "the pin reaching b")
        a.drop("k1")
        await _until(lambda: b.get("k1") is None, "the drop reaching b")
    finally:
        a.close()
        if b is not a:
            b.close()


def _listening(store) -> bool:
    """A shared pin store's database listens (its table made: the store's first copy ran)."""
    from qwen_gateway.upstream.qwenweb.pins_pg import COMPONENT, SharedPinStore

    return not isinstance(store, SharedPinStore) or (
        any(c == COMPONENT for c, _ in store.db._migrated) and store.db.listener.connections > 0)


def test_the_option_without_the_postgres_extra_is_a_clear_configure_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "psycopg_pool" else real(name, *a))
    with pytest.raises(exceptions.OptionsError, match=r"psycopg_pool.*postgres extra"):
        parsed_config(qwen_state_url="postgresql://gw@127.0.0.1/qwen")
