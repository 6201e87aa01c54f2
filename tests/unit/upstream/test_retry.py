"""What the retry policy does when an account's plan refuses the client (upstream/retry.py, the
PLAN_REFUSED branch): the Coding Plan serves coding agents only, so the request goes to another account of the
pool, the exchange says which account refused and why, and the refusing account is reported only as a plan
refusal (counted for /health, engine.py; nothing marked: it is fine for the clients its plan serves); with no
other account, the client reads a permission refusal in its
own dialect. Through the addon in mitmproxy's test style (taddons, tflow), Qwen a fake upstream client."""

from __future__ import annotations

import json
import time

import pytest
from mitmproxy.test import taddons

from qwen_gateway.accounts import KEY, AccountUnavailable, Credential
from qwen_gateway.upstream.pool.pool import PoolExhausted
from qwen_gateway.upstream.pool.status import NO_ACCOUNTS
from qwen_gateway.errors import GatewayError
from qwen_gateway.errors import unavailable
from qwen_gateway.upstream.retry import RetryPolicy
from unit.test_addon import KEY_CRED, FakeQwen, chat_flow, make, through

HI = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
REFUSED = (405, {"error": "Coding Plan is currently only available for Coding Agents"})
PLAN = Credential("cp", KEY, "https://coding-intl.dashscope.aliyuncs.com/v1", "sk-sp-secret",
                  default_model="qwen3-coder-plus")


async def test_a_refused_client_is_served_by_another_account_and_the_refusing_one_is_not_marked():
    gw, qwen = make(PLAN, KEY_CRED, qwen=FakeQwen(REFUSED))
    with taddons.context(gw) as tctx:
        gw.configure(set(tctx.options.keys()))
        f = await through(gw, chat_flow(HI))
    assert f.response.status_code == 200
    assert [str(r.url) for r in qwen.requests] == [
        "https://coding-intl.dashscope.aliyuncs.com/v1/chat/completions",
        "https://dashscope-intl.aliyuncs.com/compatible-mode/v1/chat/completions"]
    meta = f.metadata["qwen"]
    assert meta["account"] == "ds" and meta["accounts_tried"] == ["cp", "ds"]
    assert any("cp" in n and "coding agents" in n for n in meta["notes"]), meta["notes"]
    assert [(a, str(o)) for a, o in gw.pool.reports] == [("cp", "plan_refused"), ("ds", "ok")]  # counted, not marked


async def test_with_no_other_account_the_client_reads_a_permission_refusal():
    gw, qwen = make(PLAN, qwen=FakeQwen(REFUSED))
    with taddons.context(gw) as tctx:
        gw.configure(set(tctx.options.keys()))
        f = await through(gw, chat_flow(HI))
    assert f.response.status_code == 403 and len(qwen.requests) == 1
    err = json.loads(f.response.content)["error"]
    assert (err["type"], err["code"]) == ("invalid_request_error", "plan_refused")  # OpenAI's 403s say so
    assert err["message"].startswith("Account cp: Qwen's Coding Plan serves coding agents only") and "--preset dashscope-intl" in err["message"]
    assert [(a, str(o)) for a, o in gw.pool.reports] == [("cp", "plan_refused")]  # counted: not broken, not cooled
    assert [n for n in f.metadata["qwen"]["notes"] if n.startswith("cp refused")][0].endswith(": no other account")


async def test_the_anthropic_dialect_reads_it_as_a_permission_error():
    gw, qwen = make(PLAN, qwen=FakeQwen(REFUSED))
    with taddons.context(gw) as tctx:
        gw.configure(set(tctx.options.keys()))
        f = chat_flow({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]},
                      host="api.anthropic.com", path="/v1/messages", auth=b"Bearer sk-client-key")
        f.request.headers["anthropic-version"] = "2023-06-01"
        f = await through(gw, f)
    assert f.response.status_code == 403
    body = json.loads(f.response.content)
    assert body["type"] == "error" and body["error"]["type"] == "permission_error"
    assert "coding agents only" in body["error"]["message"]
    assert [(a, str(o)) for a, o in gw.pool.reports] == [("cp", "plan_refused")]


# ---- refusals no retry can fix: `x-should-retry: false`, which the openai and anthropic SDKs and Claude Code honour


async def test_a_plans_refusal_tells_the_client_not_to_retry():
    gw, _ = make(PLAN, qwen=FakeQwen(REFUSED))
    with taddons.context(gw) as tctx:
        gw.configure(set(tctx.options.keys()))
        f = await through(gw, chat_flow(HI))
    assert f.response.status_code == 403 and f.response.headers["x-should-retry"] == "false"


async def test_no_pool_is_refused_with_no_retry():
    with pytest.raises(GatewayError) as e:
        await RetryPolicy(None).acquire(None)  # type: ignore[arg-type]  # refused before the exchange is read
    assert (e.value.status, e.value.code, e.value.headers) == (503, "no_accounts", {"x-should-retry": "false"})


@pytest.mark.parametrize(("problem", "status", "code", "no_retry"), [
    (AccountUnavailable(NO_ACCOUNTS), 503, "no_usable_account", True),
    (PoolExhausted("No Qwen account can take this request. a: env var K is not set."), 503, "no_usable_account",
     True),
    (PoolExhausted("No Qwen account can take this request. a: run `qwen-auth login`", needs_login=True), 401,
     "qwen_login_required", True),
    # a refresh that failed on the network: the next request may be served, the SDKs may retry it
    (PoolExhausted("No Qwen account can take this request. a: cannot reach the OAuth server", transient=True), 503,
     "no_usable_account", False),
    (PoolExhausted("… cooling down", retry_at=time.time() + 30, throttled=True), 429, "rate_limit_exceeded", False),
    (PoolExhausted("… quota exhausted", retry_at=time.time() + 3600), 429, "insufficient_quota", True),
], ids=["none", "no-key", "login", "transient", "throttled", "quota"])
def test_what_no_usable_account_tells_the_client(problem, status, code, no_retry):
    e = unavailable(problem)
    assert (e.status, e.code) == (status, code)
    assert (e.headers.get("x-should-retry") == "false") is no_retry, e.headers
    assert e.type != "api_error"  # Anthropic's word: OpenAI's dialects say server_error
