"""qwen-usage (cli/usage.py): the ledger's rows summed per day, account and model, listed as requests, filtered,
as JSON or a table. The ledger itself: tests/unit/observe/test_ledger.py; the HTML report:
tests/unit/cli/test_usage_report.py."""

from __future__ import annotations

import datetime
import json
import os
import time

import pytest

from qwen_gateway.cli import usage as usage_cli
from qwen_gateway.observe.ledger import Ledger, row_of
from helpers.observe_testlib import exchange, local, refused


@pytest.fixture
def state(tmp_path):
    led = Ledger(tmp_path / "usage.sqlite3")
    today = time.time()
    exchanges = [
        exchange(started_at=today - 0.5),
        exchange(started_at=today - 0.4, usage={"prompt_tokens": 20, "completion_tokens": 5}),
        exchange(started_at=today - 0.3, account="ds", upstream_model="qwen3-coder-plus",
                 usage={"prompt_tokens": 7, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 0}}),
        exchange(started_at=today - 0.2, status=None, usage=None, error=(429, "rate_limit_exceeded", "slow down")),
        exchange(started_at=time.mktime((2025, 1, 2, 12, 0, 0, 0, 0, -1))),
        exchange(started_at=time.mktime((2025, 1, 1, 12, 0, 0, 0, 0, -1)), account="ds"),
        # answered by the gateway itself: successful local answers are listed, not summed
        local("models", started_at=today - 0.1), local("metrics", path="/metrics", started_at=today - 0.1),
        refused(503, "no_usable_account", "none", started_at=today),
    ]
    led.add([row_of(ex) for ex in exchanges])
    led.close()
    return tmp_path


def run_cli(capsys, *args) -> str:
    assert usage_cli.main(list(args)) == 0
    return capsys.readouterr().out


def test_today_json(state, capsys):
    rows = json.loads(run_cli(capsys, "today", "--json", "--state-dir", str(state)))
    assert rows == [
        {"account": "-", "model": "gpt-4o", "requests": 1, "prompt_tokens": 0, "completion_tokens": 0,
         "cached_tokens": 0, "cache_write_tokens": 0, "cache_saved_usd": 0.0, "errors": 1, "unpriced": 0, "usage_unknown": 0},  # the 503: refused before any account
        {"account": "default", "model": "coder-model", "requests": 3, "prompt_tokens": 1200,
         "completion_tokens": 47, "cached_tokens": 1024, "cache_write_tokens": 0, "cache_saved_usd": 0.0,
         "errors": 1, "unpriced": 0, "usage_unknown": 0},
        {"account": "ds", "model": "qwen3-coder-plus", "requests": 1, "prompt_tokens": 7, "completion_tokens": 3,
         "cached_tokens": 0, "cache_write_tokens": 0, "cache_saved_usd": 0.0, "errors": 0, "unpriced": 0, "usage_unknown": 0},
    ]


def test_default_view_is_today_as_a_table(state, capsys):
    out = run_cli(capsys, "--state-dir", str(state))
    lines = out.splitlines()
    assert lines[0].split() == ["account", "model", "requests", "prompt", "completion", "cached", "cache", "write",
                                "cache", "saved", "errors", "unpriced"]
    assert lines[3].split() == ["default", "coder-model", "3", "1,200", "47", "1,024", "0", "$0", "1", "0"]
    assert lines[-1].split() == ["total", "5", "1,207", "50", "1,024", "0", "$0", "2", "0"]


def test_days_accounts_models_and_since(state, capsys, monkeypatch):
    days = json.loads(run_cli(capsys, "days", "--json", "--state-dir", str(state)))
    assert [(d["day"], d["requests"]) for d in days][:2] == [("2025-01-01", 1), ("2025-01-02", 1)]
    assert days[-1]["requests"] == 5
    since = json.loads(run_cli(capsys, "days", "--json", "--since", "2025-01-02", "--state-dir", str(state)))
    assert [d["day"] for d in since][0] == "2025-01-02" and len(since) == 2
    accounts = json.loads(run_cli(capsys, "accounts", "--json", "--state-dir", str(state)))
    assert {a["account"]: a["requests"] for a in accounts} == {"default": 4, "ds": 2, "-": 1}
    monkeypatch.setenv("QWEN_GATEWAY_HOME", str(state))
    models = json.loads(run_cli(capsys, "models", "--json"))
    assert {m["model"]: m["requests"] for m in models} == {"coder-model": 5, "qwen3-coder-plus": 1, "gpt-4o": 1}
    assert "total" in run_cli(capsys, "models")


def test_requests_that_never_reached_qwen_are_listed_under_the_model_asked(tmp_path, capsys):
    led = Ledger(tmp_path / "usage.sqlite3")
    led.add([row_of(refused(400, "context_length_exceeded", "too long", model="gpt-4o-mini")), row_of(exchange())])
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
    for args in (["weeks"], ["days", "--since", "yesterday"], ["requests", "--status", "200s"],
                 ["requests", "--status", "600"], ["requests", "--limit", "0"]):
        with pytest.raises(SystemExit):
            usage_cli.main(args)
    err = capsys.readouterr().err
    assert "YYYY-MM-DD" in err and "not a status" in err and "not a positive number" in err


def cli_json(capsys, state, *args) -> list[dict]:
    return json.loads(run_cli(capsys, *args, "--json", "--state-dir", str(state)))


def test_requests_lists_the_newest_oldest_first_local_answers_included(state, capsys):
    rows = cli_json(capsys, state, "requests", "--limit", "4")
    assert [(r["endpoint"], r["status"], r["error"]) for r in rows] == [
        ("chat.completions", 429, "rate_limit_exceeded"), ("models", 200, None), ("metrics", 200, None),
        ("chat.completions", 503, "no_usable_account")]
    assert set(rows[0]) == {*usage_cli.REQUEST_COLUMNS, "time"} and rows[0]["stream"] is False
    assert rows[-1]["time"] == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rows[-1]["ts"]))
    assert len(cli_json(capsys, state, "requests")) == 9  # default limit 20


def test_requests_as_a_table(state, capsys):
    lines = run_cli(capsys, "requests", "--state-dir", str(state)).splitlines()
    assert lines[0].split() == ["time", "request", "model", "account", "status", "in", "out", "est", "total", "cut",
                                "error"]
    assert lines[1].startswith("----")
    last = lines[-1].split()
    assert last[2:] == ["POST", "/v1/chat/completions", "gpt-4o→?", "-", "503", "2ms", "no_usable_account"]
    models = next(ln for ln in lines if "/v1/models" in ln).split()
    assert models[2:] == ["GET", "/v1/models", "-", "-", "200", "0ms"]


def test_filters(state, capsys):
    def listed(*args):
        return [(r["account"], r["status"]) for r in cli_json(capsys, state, "requests", *args)]

    assert listed("--errors") == [("default", 429), (None, 503)]
    assert listed("--status", "503") == listed("--status", "5xx") == [(None, 503)]
    assert listed("--status", "4XX") == [("default", 429)]
    assert listed("--account", "ds") == [("ds", 200), ("ds", 200)]
    assert [s for _, s in listed("--account", "-")] == [200, 200, 503]
    assert listed("--model", "qwen3-coder-plus") == [("ds", 200)]  # the Qwen model
    assert len(listed("--model", "gpt-4o")) == 7  # the model asked for
    assert len(listed("--since", "2025-01-02")) == 8
    assert len(listed("--since", "1d")) == 7
    newest = json.loads(run_cli(capsys, "requests", "--json", "--limit", "1", "--state-dir", str(state)))[0]["ts"]
    just_before = datetime.datetime.fromtimestamp(newest - 0.05).isoformat()  # local time, with a fraction
    assert listed("--since", just_before) == [(None, 503)]
    assert len(listed("--since", "2025-01-02T13:00")) == 7
    # the filters apply to every view, combined
    (row,) = cli_json(capsys, state, "accounts", "--errors", "--account", "default")
    assert (row["requests"], row["errors"]) == (1, 1)
    assert cli_json(capsys, state, "models", "--status", "5xx") == [
        {"model": "gpt-4o", "requests": 1, "prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0,
         "cache_write_tokens": 0, "cache_saved_usd": 0.0, "errors": 1, "unpriced": 0, "usage_unknown": 0}]


def test_since_forms():
    from qwen_gateway.cli.usage_args import parse_since
    now = 1_700_000_000.0
    assert parse_since("90s", now) == now - 90
    assert parse_since("30m", now) == now - 1800
    assert parse_since("6h", now) == now - 6 * 3600
    assert parse_since("7d", now) == now - 7 * 86400
    assert parse_since("2025-01-02") == time.mktime((2025, 1, 2, 0, 0, 0, 0, 0, -1))
    assert parse_since("2025-01-02T13:30") == time.mktime((2025, 1, 2, 13, 30, 0, 0, 0, -1))


def test_failed_local_answers_are_summed(tmp_path, capsys):
    led = Ledger(tmp_path / "usage.sqlite3")
    led.add([row_of(local("models")), row_of(refused(401, "invalid_api_key", "bad key", endpoint=None,
                                                     route="models", method="GET", path="/v1/models", model=""))])
    led.close()
    assert cli_json(capsys, tmp_path, "today") == [
        {"account": "-", "model": "-", "requests": 1, "prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0,
         "cache_write_tokens": 0, "cache_saved_usd": 0.0, "errors": 1, "unpriced": 0, "usage_unknown": 0}]
    assert len(cli_json(capsys, tmp_path, "requests")) == 2


def test_console_script_is_installed():
    import sys
    from pathlib import Path

    assert os.access(Path(sys.executable).parent / "qwen-usage", os.X_OK)


def test_a_since_that_is_no_day_time_or_age_is_refused():
    import argparse

    for bad in ("yesterday", "30x", "2025-13-01", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="not a day, time or age"):
            usage_cli.parse_since(bad)
