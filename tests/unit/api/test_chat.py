"""/v1/chat/completions (api/chat.py): the request checked as OpenAI checks it, usage only when asked for, and the
chunks encoded for the client."""

from __future__ import annotations

import json

import pytest

from qwen_gateway import sse
from qwen_gateway.api import chat
from qwen_gateway.errors import GatewayError
from qwen_gateway.exchange import ClientRequest, Exchange

USER = {"role": "user", "content": "hi"}


def chunk(content: str = "", finish: str | None = None) -> dict:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]}


USAGE = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
         "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def decoded(out: list[bytes]) -> list[dict]:
    return [json.loads(e.data) for e in sse.SSEDecoder().feed(b"".join(out)) if e.data != "[DONE]"]


def test_a_body_that_is_no_object_is_refused():
    with pytest.raises(GatewayError) as e:
        chat.validate_chat_request([USER])
    assert (e.value.status, e.value.code) == (400, "invalid_request_body")


def test_a_function_whose_parameters_are_no_schema_is_refused():
    with pytest.raises(GatewayError) as e:
        chat.validate_chat_request({"model": "m", "messages": [USER], "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": 5}}}]})
    assert e.value.status == 400 and e.value.param is not None and "tools" in e.value.param


@pytest.mark.parametrize("options, wanted", [({"include_usage": True}, True), ({"include_usage": False}, False),
                                             ({}, False), (None, False), ("yes", False)])
def test_usage_is_wanted_only_when_asked(options, wanted):
    assert chat.wants_usage({"stream_options": options}) is wanted


def test_without_usage_asked_the_usage_chunk_is_not_sent():
    t = chat.ChatStreamTranslator(False)
    assert t.feed(USAGE) == [] and decoded(t.feed(chunk("a")))[0]["choices"][0]["delta"] == {"content": "a"}


def test_with_usage_asked_every_chunk_says_null_until_the_usage_chunk():
    # OpenAI's stream with include_usage: `usage: null` on each chunk, then one chunk with the usage
    t = chat.ChatStreamTranslator(True)
    assert decoded(t.feed(chunk("a")))[0]["usage"] is None
    assert decoded(t.feed(USAGE))[0]["usage"]["total_tokens"] == 2


def test_the_stream_ends_with_done_and_a_failure_is_an_error_event():
    t = chat.ChatStreamTranslator(False)
    assert t.finish() == [sse.DONE]
    assert decoded(t.fail({"message": "broken", "type": "server_error"})) == [
        {"error": {"message": "broken", "type": "server_error"}}]


def test_the_endpoint_translates_and_says_which_conversation():
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://x"))
    body = {"model": "m", "messages": [USER], "prompt_cache_key": "k"}
    out = chat.CHAT.to_chat(body, ex)
    assert out["messages"] == [USER] and ex.conversation is not None and ex.conversation.source == "prompt_cache_key"
