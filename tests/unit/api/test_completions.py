"""Legacy completions (api/completions.py): a prompt becomes one user message, what Qwen cannot do is refused
naming the field, the answer and stream in the text_completion shape."""

from __future__ import annotations

import json

import pytest

from qwen_gateway import sse
from qwen_gateway.api import completions
from qwen_gateway.errors import GatewayError


def test_a_prompt_is_one_user_message_with_the_carried_fields():
    chat = completions.completions_to_chat({"model": "m", "prompt": "Say hi", "max_tokens": 5, "stop": ["\n"],
                                            "echo": False, "best_of": 1})
    assert chat == {"model": "m", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 5,
                    "stop": ["\n"]}


def test_a_list_of_one_prompt_is_that_prompt():
    assert completions.completions_to_chat({"model": "m", "prompt": ["one"]})["messages"][0]["content"] == "one"


@pytest.mark.parametrize("fields, param", [
    ({"prompt": ["a", "b"]}, "prompt"),
    ({"prompt": [1, 2]}, "prompt"),
    ({"prompt": "x", "suffix": "y"}, "suffix"),
    ({"prompt": "x", "echo": True}, "echo"),
    ({"prompt": "x", "logprobs": 2}, "logprobs"),
    ({"prompt": "x", "best_of": 3}, "best_of"),
])
def test_what_qwen_cannot_do_is_refused_naming_the_field(fields, param):
    with pytest.raises(GatewayError) as e:
        completions.completions_to_chat({"model": "m", **fields})
    assert (e.value.status, e.value.param) == (400, param)


def test_an_answer_is_a_text_completion():
    out = completions.chat_to_completion({"created": 9, "model": "qwen", "usage": {"total_tokens": 3}, "choices": [
        {"index": 0, "message": {"content": "hi"}, "finish_reason": None}]}, {"model": "gpt-3.5-turbo-instruct"})
    assert out["id"].startswith("cmpl-") and out["object"] == "text_completion" and out["created"] == 9
    assert out["model"] == "gpt-3.5-turbo-instruct" and out["usage"] == {"total_tokens": 3}
    assert out["choices"] == [{"text": "hi", "index": 0, "logprobs": None, "finish_reason": "stop"}]


def events(out: list[bytes]) -> list[dict]:
    return [json.loads(e.data) for e in sse.SSEDecoder().feed(b"".join(out)) if e.data != "[DONE]"]


def test_a_stream_sends_text_chunks_and_skips_empty_ones():
    t = completions.CompletionsStreamTranslator({"model": "m"})
    assert t.feed({"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}) == []
    (event,) = events(t.feed({"created": 2, "choices": [{"index": 0, "delta": {"content": "hi"},
                                                         "finish_reason": None}]}))
    assert event == {"id": t.id, "object": "text_completion", "created": 2, "model": "m",
                     "choices": [{"text": "hi", "index": 0, "logprobs": None, "finish_reason": None}]}
    assert t.finish() == [sse.DONE]


def test_a_streams_usage_only_when_asked():
    usage = {"choices": [], "usage": {"total_tokens": 4}}
    assert completions.CompletionsStreamTranslator({}).feed(usage) == []
    asked = completions.CompletionsStreamTranslator({"stream_options": {"include_usage": True}})
    assert events(asked.feed(usage))[0]["usage"] == {"total_tokens": 4}
