"""The context guard: local 400 context_length_exceeded before the gateway, counting only big bodies."""

from __future__ import annotations

import json

import pytest
from mitmproxy import exceptions, http
from mitmproxy.test import taddons

from qwen_gateway.errors import classify
from qwen_gateway.observe import guard as guard_mod
from qwen_gateway.observe.guard import ContextGuard, byte_bound, context_error, parse_limits
from qwen_gateway.observe.tokens import IMAGE_TOKENS, count_request_tokens
from helpers.observe_testlib import GatewayOptions, chat_body, client_flow


@pytest.fixture
def guard_ctx():
    g = ContextGuard()
    with taddons.context(GatewayOptions(), g) as tctx:
        tctx.configure(g, qwen_context_limits=["gpt-4o-mini=50", "coder-model=1000000"])
        yield g, tctx


def test_parse_limits():
    assert parse_limits(["a=1", " b = 20 ", "org/model:v1=300"]) == {"a": 1, "b": 20, "org/model:v1": 300}
    for bad in (["a"], ["a="], ["=5"], ["a=x"], ["a=0"], ["a=-3"]):
        with pytest.raises(exceptions.OptionsError):
            parse_limits(bad)


async def test_bad_options_are_refused():
    g = ContextGuard()
    with taddons.context(g) as tctx:
        with pytest.raises(exceptions.OptionsError):
            tctx.configure(g, qwen_context_limits=["gpt-4o"])
        with pytest.raises(exceptions.OptionsError):
            tctx.configure(g, qwen_context_limit_default=-1)


async def test_over_the_limit_is_answered_locally_with_openais_error(guard_ctx):
    g, _ = guard_ctx
    body = chat_body("word " * 200, model="gpt-4o-mini", stream=True)
    f = client_flow(body)
    await g.request(f)
    tokens = count_request_tokens(body)
    assert f.response.status_code == 400 and f.response.headers["content-type"] == "application/json"
    assert json.loads(f.response.content) == {"error": {
        "message": f"This model's maximum context length is 50 tokens. However, your messages resulted in {tokens} "
                   "tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}
    meta = f.metadata["qwen"]  # a record like the gateway's: the request line, ledger and metrics count it
    assert (meta["endpoint"], meta["model"], meta["status"], meta["stream"]) == ("chat.completions", "gpt-4o-mini",
                                                                                 400, True)
    assert meta["error"]["code"] == "context_length_exceeded" and meta["prompt_tokens_est"] == tokens


async def test_same_error_as_qwens_own_context_400():
    """Qwen's "Range of input length" 400 and the guard's answer look the same to a client."""
    mapped = classify(400, json.dumps({"error": {"message": "Range of input length should be [1, 98304]",
                                                 "type": "invalid_request_error", "code": "invalid_parameter_error"}}))
    mine = context_error(50, 60)
    assert (mapped.status, mapped.type, mapped.code, mapped.param) == (mine.status, mine.type, mine.code, mine.param)


async def test_under_the_limit_passes_and_hands_its_count_on(guard_ctx):
    g, _ = guard_ctx
    body = chat_body("word " * 20, model="gpt-4o-mini")  # longer than 50 bytes, fewer than 50 tokens
    f = client_flow(body)
    await g.request(f)
    assert f.response is None and "qwen" not in f.metadata
    assert f.metadata["qwen_tokens"]["prompt_tokens_est"] == count_request_tokens(body) <= 50


async def test_small_bodies_are_not_even_parsed(guard_ctx, monkeypatch):
    g, _ = guard_ctx
    monkeypatch.setattr(guard_mod.json, "loads", lambda *a: pytest.fail("parsed a small body"))
    f = client_flow(b'{"model":"gpt-4o-mini","messages":[]}')  # 38 bytes <= 50
    await g.request(f)
    assert f.response is None and "qwen_tokens" not in f.metadata


async def test_image_parts_widen_the_byte_bound(guard_ctx):
    g, tctx = guard_ctx
    tctx.configure(g, qwen_context_limits=["gpt-4o-mini=700"])
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}
    content = json.dumps(body).encode()
    assert len(content) < 700 < byte_bound(content) and count_request_tokens(body) > 700
    f = client_flow(content)
    await g.request(f)
    assert f.response is not None and f.response.status_code == 400
    assert byte_bound(b'{"type":"input_image"}') >= IMAGE_TOKENS


async def test_default_limit_and_models_without_limit(guard_ctx):
    g, tctx = guard_ctx
    f = client_flow(chat_body("word " * 200, model="gpt-4o"))  # no limit for gpt-4o, default off
    await g.request(f)
    assert f.response is None
    tctx.configure(g, qwen_context_limit_default=100)
    f = client_flow(chat_body("word " * 200, model="gpt-4o"))
    await g.request(f)
    assert f.response.status_code == 400 and b"maximum context length is 100 tokens" in f.response.content


async def test_responses_and_completions_endpoints(guard_ctx):
    g, _ = guard_ctx
    f = client_flow({"model": "gpt-4o-mini", "input": "word " * 200}, path="/v1/responses")
    await g.request(f)
    assert json.loads(f.response.content)["error"]["param"] == "input"
    assert f.metadata["qwen"]["endpoint"] == "responses"
    f = client_flow({"model": "gpt-4o-mini", "prompt": "word " * 200}, path="/v1/completions")
    await g.request(f)
    assert json.loads(f.response.content)["error"]["param"] == "prompt"


async def test_what_the_guard_leaves_alone(guard_ctx):
    g, tctx = guard_ctx
    big = chat_body("word " * 200, model="gpt-4o-mini")
    for f in (client_flow(big, path="/v1/embeddings"), client_flow(big, method="PUT"),
              client_flow(big, reverse=False, host="example.com"),  # not the gateway's in regular mode
              client_flow(b"{not json" + b" " * 100), client_flow(b"[1, 2, 3]" + b" " * 100)):
        await g.request(f)
        assert f.response is None, f.request
    answered = client_flow(big)
    answered.response = http.Response.make(401)
    await g.request(answered)
    assert answered.response.status_code == 401
    f = client_flow(big, reverse=False, host="api.openai.com")  # intercepted host in regular mode
    await g.request(f)
    assert f.response.status_code == 400
    tctx.configure(g, qwen_context_limits=[])
    f = client_flow(big)
    await g.request(f)
    assert f.response is None
