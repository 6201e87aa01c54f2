"""A self-hosted server's whole answer whose finish the client's API has no word for (upstream/selfhosted/answer.py,
`to_chat`): `abort` and `error` are an upstream error (502, server_error), `repetition` an incomplete answer said
as `length`."""

from __future__ import annotations

import pytest

from qwen_gateway.errors import GatewayError
from qwen_gateway.upstream.selfhosted import answer


def whole(finish: str) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "la la"}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}


@pytest.mark.parametrize("finish", ["abort", "error"])
def test_a_whole_answer_broken_off_is_an_upstream_error(finish):
    with pytest.raises(GatewayError) as caught:
        answer.to_chat(whole(finish), model="gpt-4o")
    assert caught.value.status == 502 and caught.value.code == "upstream_error" and finish in caught.value.message


def test_repetition_is_said_as_length():
    out = answer.to_chat(whole("repetition"), model="gpt-4o")
    assert out["choices"][0]["finish_reason"] == "length"


def test_the_known_finishes_stay():
    for finish in ("stop", "length", "content_filter"):
        assert answer.to_chat(whole(finish), model="m")["choices"][0]["finish_reason"] == finish
