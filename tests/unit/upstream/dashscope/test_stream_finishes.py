"""A finish Model Studio might send that OpenAI's clients have no word for (upstream/dashscope/stream.py, answer.py):
never passed on; the answer broke off (a stream: a break the turn continues or ends in the dialect's error; a whole
answer: a 502). The finishes Model Studio documents pass as they came."""

from __future__ import annotations

import pytest

from qwen_gateway.errors import SERVER, GatewayError
from qwen_gateway.upstream.dashscope.answer import qwen_to_chat
from qwen_gateway.upstream.dashscope.stream import ChunkNormalizer


def chunk(content: str, finish: str | None) -> dict:
    return {"id": "c", "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]}


def test_an_unknown_finish_in_a_stream_is_a_break():
    qwen = ChunkNormalizer("m")
    out = qwen.feed(chunk("half", "insufficient_system_resource"))
    assert out[0]["choices"][0]["finish_reason"] is None and out[0]["choices"][0]["delta"]["content"] == "half"
    assert qwen.finish_reasons == {} and qwen.error_text and "insufficient_system_resource" in qwen.error_text
    assert qwen.fault(qwen.error_text).kind is SERVER


@pytest.mark.parametrize("finish", ["stop", "length", "tool_calls"])
def test_the_documented_finishes_pass(finish):
    qwen = ChunkNormalizer("m")
    assert qwen.feed(chunk("a", finish))[0]["choices"][0]["finish_reason"] == finish and qwen.error_text is None


def test_an_unknown_finish_in_a_whole_answer_is_an_upstream_error():
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "half"}, "finish_reason": "abort"}]}
    with pytest.raises(GatewayError) as caught:
        qwen_to_chat(body, model="m")
    assert caught.value.status == 502
    assert qwen_to_chat({"choices": [{"message": {"content": "a"}, "finish_reason": "length"}]},
                        model="m")["choices"][0]["finish_reason"] == "length"
