"""Observability end to end: the emulator behind a real mitmdump running addons/qwen.py.

The request line in mitmdump's log, ledger rows and `qwen-usage`, `/metrics`, debug log files, the
context guard, Qwen's own context-length 400, and requests the gateway refuses itself (each with a line,
a row and a count).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from qwen_gateway.tokens import count_request_tokens, estimate_request_tokens
from helpers import commands
from helpers.procs import BIN
from helpers.ledger import ledger_rows

pytestmark = pytest.mark.e2e

CLIENT_KEY = "sk-client-secret-key-0123456789"


def wait_for(pred, what: str, timeout: float = 20.0):
    """Polls until pred() is truthy (processes write their files a little later); returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def observed(make_gateway, emu, oauth_home, tmp_path):
    import openai
    state = tmp_path / "state"
    env = {**oauth_home["env"], "QWEN_GATEWAY_HOME": str(state)}
    gw = make_gateway("observed", env=env, args=(  # its memory map is read: tiktoken never loaded
        "--set", "qwen_debug_log=true", "--set", "qwen_debug_log_count=5",
        "--set", "qwen_context_limits=gpt-4o-mini=50"))
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0,
                           http_client=httpx.Client(trust_env=False, timeout=30))
    yield gw, client, state, env
    client.close()


_LINE = re.compile(r"\b((?:GET|POST|PUT|PATCH|DELETE) /\S* .* total=\S+.*)$")


def all_lines(gw) -> list[str]:
    """Every request line in mitmdump's log (API requests, local answers, refusals), without mitmdump's
    "[hh:mm:ss.mmm] " prefix."""
    return [m.group(1) for ln in gw.log().splitlines() if (m := _LINE.search(ln))]


def request_lines(gw) -> list[str]:
    """The request lines of API requests sent with POST to /v1/…."""
    return [ln for ln in all_lines(gw) if ln.startswith("POST /v1/") and " acct=" in ln]



def qwen_usage(env, state, *args) -> str:
    r = commands.run([BIN / "qwen-usage", *args, "--state-dir", str(state)], timeout=30, env={**os.environ, **env})
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_request_line_ledger_and_qwen_usage_match_the_emulators_usage(observed, emu):
    gw, client, state, env = observed
    emu.switches(usage_cached_tokens=3)
    r1 = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "count me please"}])
    chunks = list(client.chat.completions.create(model="gpt-4o", stream=True, stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": "stream this one"}]))
    u2 = next(c.usage for c in chunks if c.usage)
    reported = [r1.usage, u2]
    assert all(u.prompt_tokens > 0 and u.completion_tokens > 0 for u in reported)

    # one line per request in mitmdump's log (each waits for its prompt estimate: the order may vary)
    lines = wait_for(lambda: len(request_lines(gw)) >= 2 and request_lines(gw), "two request lines")
    assert len(lines) == 2
    for line in lines:
        assert line.startswith("POST /v1/chat/completions gpt-4o→coder-model acct=default 200 est=")
        assert " total=" in line
    for u in reported:
        assert any(f" in={u.prompt_tokens} out={u.completion_tokens} cached=3 " in line for line in lines)
    assert len([line for line in lines if " ttfb=" in line]) == 1  # the stream

    # one ledger row per request, with the emulator's numbers and the gateway's estimate
    rows = wait_for(lambda: len(ledger_rows(state)) >= 2 and ledger_rows(state), "two ledger rows")
    assert [(r["prompt_tokens"], r["completion_tokens"], r["cached_tokens"]) for r in rows] == \
        [(u.prompt_tokens, u.completion_tokens, 3) for u in reported]
    assert [(r["endpoint"], r["model"], r["upstream_model"], r["account"], r["status"], r["stream"]) for r in rows] == \
        [("chat.completions", "gpt-4o", "coder-model", "default", 200, 0),
         ("chat.completions", "gpt-4o", "coder-model", "default", 200, 1)]
    # characters / 4: a chat prompt needs no exact count, and tiktoken (~25 MB) is never loaded for it
    assert all(r["est_tokens"] > 0 and r["token_method"] == "estimate" for r in rows)
    assert gw.proc is not None and "_tiktoken" not in Path(f"/proc/{gw.proc.pid}/maps").read_text()
    assert rows[1]["ttfb_ms"] is not None and all(r["duration_ms"] > 0 for r in rows)
    assert oct((state / "usage.sqlite3").stat().st_mode & 0o777) == "0o600"

    # qwen-usage reads the same numbers
    (today,) = json.loads(qwen_usage(env, state, "today", "--json"))
    assert today == {"account": "default", "model": "coder-model", "requests": 2,
                     "prompt_tokens": sum(u.prompt_tokens for u in reported),
                     "completion_tokens": sum(u.completion_tokens for u in reported), "cached_tokens": 6,
                     "cache_write_tokens": 0, "cache_saved_usd": None, "errors": 0,
                     "unpriced": 2, "usage_unknown": 0}  # an OAuth login has no price: what its cache saved is
    # unknown, never $0; every answer had Qwen's usage
    table = qwen_usage(env, state)
    assert "coder-model" in table and table.splitlines()[-2].split()[:2] == ["total", "2"]
    assert table.splitlines()[-1].startswith("unpriced: 2 requests on coder-model")


def test_metrics_endpoint(observed, emu):
    gw, client, _, _ = observed
    emu.switches(usage_cached_tokens=2)
    r = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    list(client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True))
    resp = httpx.get(gw.url + "/metrics", trust_env=False, timeout=10)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain; version=")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(resp.text) for s in fam.samples}
    ok = ("qwen_requests_total", (("account", "default"), ("endpoint", "chat.completions"), ("key", ""),
                                  ("model", "gpt-4o"), ("status", "200"), ("upstream_model", "coder-model")))
    assert samples[ok] == 2
    prompt = ("qwen_tokens_total", (("account", "default"), ("key", ""), ("kind", "prompt"), ("model", "coder-model")))
    assert samples[prompt] >= r.usage.prompt_tokens
    assert samples[("qwen_tokens_total", (("account", "default"), ("key", ""), ("kind", "cached"),
                                          ("model", "coder-model")))] >= 2
    hist = (("endpoint", "chat.completions"), ("model", "coder-model"))
    assert samples[("qwen_request_duration_seconds_count", hist)] == 2
    assert samples[("qwen_time_to_first_byte_seconds_count", hist)] == 1
    assert samples[("qwen_streams_in_flight", ())] == 0
    assert emu.chat_requests() and not [x for x in emu.requests() if x["path"].endswith("/metrics")]


def test_debug_logs_hold_whole_exchanges_without_secrets(observed, emu, oauth_home):
    gw, client, state, _ = observed
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "log me"}])
    list(client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "and me"}],
                                        stream=True))
    logs = state / "logs"
    files = wait_for(lambda: len(list(logs.glob("exchange-*.json"))) >= 2 and sorted(logs.glob("exchange-*.json")),
                     "two debug log files")
    text = "".join(p.read_text() for p in files)
    assert oauth_home["token"] not in text and CLIENT_KEY not in text
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in files)
    records = sorted((json.loads(p.read_text()) for p in files), key=lambda r: r["summary"]["stream"])
    plain, stream = records
    assert plain["client_request"]["url"].endswith("/v1/chat/completions")
    # the gateway removes the client's key from the flow; were it there, the file would redact it
    assert plain["client_request"]["headers"].get("authorization", "<redacted>") == "<redacted>"
    assert plain["client_request"]["body"]["json"]["model"] == "gpt-4o"
    up = plain["upstream_request"]
    assert up["url"].startswith(emu.url) and up["body"]["json"]["model"] == "coder-model"
    headers = {k.lower(): v for k, v in up["headers"].items()}  # as sent, in the gateway's spelling
    assert headers["authorization"] == "<redacted>" and headers["x-dashscope-authtype"] == "qwen-oauth"
    assert plain["upstream_response"]["status"] == 200 and "choices" in plain["upstream_response"]["body"]["json"]
    assert plain["client_response"]["body"]["json"]["object"] == "chat.completion"
    assert stream["upstream_response"]["streamed"] is True
    assert "data: " in stream["client_response"]["body"]["text"]
    # rotation: newest 5 kept
    for i in range(6):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"n{i}"}])
    wait_for(lambda: len(request_lines(gw)) >= 8, "eight request lines")
    # files are written (then rotated) from a thread just after each line: wait until it settles at 5
    def newest_five():
        files = sorted(logs.glob("exchange-*.json"))
        try:
            asked = [json.loads(p.read_text())["client_request"]["body"]["json"]["messages"][0]["content"]
                     for p in files]
        except (OSError, ValueError, KeyError, TypeError):
            return False  # a file being replaced right now
        return asked == ["n1", "n2", "n3", "n4", "n5"]

    wait_for(newest_five, "rotation to the newest 5")


def test_context_guard_answers_locally(observed, emu):
    import openai
    gw, client, state, _ = observed
    messages = [{"role": "user", "content": "word " * 200}]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    tokens = count_request_tokens({"model": "gpt-4o-mini", "messages": messages})
    assert e.value.status_code == 400 and e.value.code == "context_length_exceeded"
    assert e.value.body["param"] == "messages" and e.value.body["type"] == "invalid_request_error"
    assert e.value.body["message"] == (f"This model's maximum context length is 50 tokens. However, your messages "
                                       f"resulted in {tokens} tokens. Please reduce the length of the messages.")
    assert emu.chat_requests() == []  # Qwen never saw it
    line = wait_for(lambda: request_lines(gw), "the request line")[0]
    assert line.startswith(f"POST /v1/chat/completions gpt-4o-mini→? acct=- 400 est={tokens} ")
    assert "error=context_length_exceeded" in line
    (row,) = wait_for(lambda: ledger_rows(state), "the ledger row")
    assert (row["status"], row["error"], row["est_tokens"]) == (400, "context_length_exceeded", tokens)
    # short prompts (and other models) go through
    assert client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "short"}])
    assert client.chat.completions.create(model="gpt-4o", messages=messages)
    assert len(emu.chat_requests()) == 2


def test_qwens_own_context_400_is_the_same_openai_error(observed, emu):
    import openai
    gw, client, state, _ = observed
    emu.fault("context400")
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "too long, says Qwen"}])
    assert e.value.status_code == 400 and e.value.code == "context_length_exceeded"
    assert e.value.body["type"] == "invalid_request_error" and e.value.body["param"] == "messages"
    # in OpenAI's words, its limit Qwen's ("Range of input length should be [1, 983616]"), at least one token over
    assert e.value.body["message"].startswith("This model's maximum context length is 983616 tokens. However, your "
                                              "messages resulted in 983617 tokens.")
    assert len(emu.chat_requests()) == 1
    line = wait_for(lambda: request_lines(gw), "the request line")[0]
    assert " acct=default 400 " in line and "error=context_length_exceeded" in line
    (row,) = wait_for(lambda: ledger_rows(state), "the ledger row")
    assert (row["status"], row["error"], row["account"]) == (400, "context_length_exceeded", "default")


def test_a_big_prompt_gets_its_estimate_in_the_ledger(observed, emu):
    gw, client, state, _ = observed
    emu.switches(reply="ok")
    text = "lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 10_000  # ~570 KB
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": text}])
    (row,) = wait_for(lambda: [r for r in ledger_rows(state) if r["est_tokens"]], "the estimate")
    # the client's request is what is estimated: characters / 4 by default (no exact count needed for a chat
    # prompt; tests/unit/test_tokens_lazy.py), the same count as tokens.py's for that body
    rough = estimate_request_tokens({"messages": [{"role": "user", "content": text}]}, exact=False)
    assert (row["est_tokens"], row["token_method"]) == rough
    assert "est=" in wait_for(lambda: request_lines(gw), "the request line")[0]


@pytest.fixture
def refusing(make_gateway, home):
    """A gateway with client keys, no Qwen login and a 1 MiB body limit: everything is refused locally."""
    tmp, env = home
    env = {**env, "QWEN_GATEWAY_KEYS": CLIENT_KEY}
    gw = make_gateway("refusing", env=env, args=("--set", "qwen_max_body_mb=1"))
    http = httpx.Client(base_url=gw.url, trust_env=False, timeout=30,
                        headers={"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"})
    yield gw, http, tmp / "state", env
    http.close()


def test_local_refusals_get_a_line_a_row_and_a_count(refusing, emu):
    """Issue: requests the gateway refused itself left no request line and no ledger row; only mitmproxy's
    own line showed, which read as if the request had gone to Qwen."""
    gw, http, state, env = refusing
    chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    no_login = http.post("/v1/chat/completions", json=chat)
    assert no_login.status_code in (401, 503)  # no usable account: the code names the fix
    no_login_code = no_login.json()["error"]["code"]
    assert http.post("/v1/chat/completions", content=b"{not json").status_code == 400
    assert http.post("/v1/chat/completion", json=chat).status_code == 404
    assert http.post("/v1/chat/completions", json=chat, headers={"authorization": "Bearer sk-wrong-key-0000"}
                     ).status_code == 401
    assert http.post("/v1/chat/completions", content=b'{"model": "gpt-4o", "x": "' + b"a" * (2 << 20) + b'"}'
                     ).status_code == 413
    assert http.get("/v1/models").status_code == 200
    assert emu.chat_requests() == []  # nothing went to Qwen

    expected = [  # (start of the line, status, error code)
        ("POST /v1/chat/completions gpt-4o→? acct=- ", no_login.status_code, no_login_code),
        ("POST /v1/chat/completions ", 400, "invalid_json"),
        ("POST /v1/chat/completion route=unknown ", 404, "unknown_url"),
        ("POST /v1/chat/completions ", 401, "invalid_api_key"),
        ("POST /v1/chat/completions ", 413, "request_too_large"),
        ("GET /v1/models route=models ", 200, None),
    ]
    lines = wait_for(lambda: len(all_lines(gw)) >= len(expected) and all_lines(gw), "six request lines")
    assert len(lines) == len(expected), lines
    # a line is written when its exchange ends (a refusal that carries a prompt waits for its estimate):
    # match each expected line to one line, in any order
    left = list(lines)
    for start, status, code in expected:
        match = next((ln for ln in left if ln.startswith(start) and f" {status} " in ln
                      and ((f" error={code}" in ln) if code else " error=" not in ln)), None)
        assert match is not None, (start, status, code, lines)
        left.remove(match)

    rows = wait_for(lambda: len(ledger_rows(state)) >= len(expected) and ledger_rows(state), "six ledger rows")
    assert [(r["method"], r["path"], r["status"], r["error"]) for r in rows] == [
        ("POST", "/v1/chat/completions", no_login.status_code, no_login_code),
        ("POST", "/v1/chat/completions", 400, "invalid_json"),
        ("POST", "/v1/chat/completion", 404, "unknown_url"),
        ("POST", "/v1/chat/completions", 401, "invalid_api_key"),
        ("POST", "/v1/chat/completions", 413, "request_too_large"),
        ("GET", "/v1/models", 200, None),
    ]
    assert [r["endpoint"] for r in rows][2] == "unknown" and rows[-1]["endpoint"] == "models"
    assert all(r["account"] is None and r["upstream_model"] is None for r in rows)

    # qwen-usage lists them and filters them
    listed = json.loads(qwen_usage(env, state, "requests", "--errors", "--json"))
    assert [(r["path"], r["status"]) for r in listed] == [(r["path"], r["status"]) for r in rows[:5]]
    assert [r["status"] for r in json.loads(qwen_usage(env, state, "requests", "--status", "4xx", "--json"))] == \
        [s for s in (no_login.status_code, 400, 404, 401, 413) if s < 500]
    assert "invalid_json" in qwen_usage(env, state, "requests")

    # and /metrics counts them by endpoint or route
    resp = http.get("/metrics")
    assert resp.status_code == 200
    counted = {(s.labels["endpoint"], s.labels["status"]): s.value
               for fam in text_string_to_metric_families(resp.text) for s in fam.samples
               if s.name == "qwen_requests_total"}
    assert counted[("unknown", "404")] == 1 and counted[("models", "200")] == 1
    assert counted[("chat.completions", "413")] == 1 and counted[("chat.completions", "400")] == 1
