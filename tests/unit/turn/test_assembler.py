"""A whole chat completion made of the chat form's normalised chunks (turn/assembler.py), for a client that asked
for a whole answer from an upstream that only streams."""

from __future__ import annotations

import json

from qwen_gateway.turn.assembler import ChunkAssembler
from qwen_gateway.turn.stream_rewriter import StreamRewriter
from qwen_gateway.upstream.dashscope.stream import ChunkNormalizer


def chunk(*choices, usage=None, **head):
    c = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "gpt-4o",
         "choices": list(choices), **head}
    if usage is not None:
        c["usage"] = usage
    return c


def choice(index=0, finish=None, **delta):
    return {"index": index, "delta": delta, "finish_reason": finish}


def test_text_and_reasoning_are_joined_into_one_message():
    a = ChunkAssembler()
    for c in (chunk(choice(role="assistant", content="")), chunk(choice(reasoning_content="think ")),
              chunk(choice(reasoning_content="more")), chunk(choice(content="Hello")),
              chunk(choice(content=", world", finish="stop")),
              chunk(usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7})):
        assert a.feed(c) == []  # it writes nothing: the answer is whole at the end
    assert a.completion() == {
        "id": "chatcmpl-1", "created": 7, "model": "gpt-4o", "object": "chat.completion",
        "choices": [{"index": 0, "logprobs": None, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "Hello, world", "reasoning_content": "think more",
                                 "refusal": None}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}


def test_tool_call_fragments_are_joined_by_their_index_in_index_order():
    a = ChunkAssembler()
    a.feed(chunk(choice(tool_calls=[{"index": 1, "id": "call_b", "type": "function",
                                     "function": {"name": "b", "arguments": ""}}])))
    a.feed(chunk(choice(tool_calls=[{"index": 0, "id": "call_a", "function": {"name": "get_", "arguments": '{"x"'}}])))
    a.feed(chunk(choice(tool_calls=[{"index": 0, "function": {"name": "weather", "arguments": ": 1}"}},
                                    {"index": 1, "function": {"arguments": "{}"}}], finish="tool_calls")))
    message = a.completion()["choices"][0]["message"]
    assert message["tool_calls"] == [
        {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"x": 1}'}},
        {"id": "call_b", "type": "function", "function": {"name": "b", "arguments": "{}"}}]
    assert message["content"] is None and a.completion()["choices"][0]["finish_reason"] == "tool_calls"


def test_choices_are_kept_apart_and_an_unfinished_one_says_stop():
    a = ChunkAssembler()
    a.feed(chunk(choice(1, content="second")))
    a.feed(chunk(choice(0, content="first", finish="length")))
    choices = a.completion()["choices"]
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in choices] == [
        (0, "first", "length"), (1, "second", "stop")]


def test_legacy_function_call_and_refusal_are_joined():
    a = ChunkAssembler()
    a.feed(chunk(choice(function_call={"name": "f", "arguments": "{"})))
    a.feed(chunk(choice(function_call={"arguments": "}"}, refusal="no")))
    message = a.completion()["choices"][0]["message"]
    assert message["function_call"] == {"name": "f", "arguments": "{}"} and message["refusal"] == "no"


def test_the_head_is_the_first_chunks_and_a_fingerprint_is_kept_only_as_a_string():
    a = ChunkAssembler()
    a.feed(chunk(choice(content="a"), system_fingerprint="fp_1"))
    a.feed(chunk(choice(content="b"), id="chatcmpl-2", model="other"))
    out = a.completion()
    assert (out["id"], out["model"], out["system_fingerprint"]) == ("chatcmpl-1", "gpt-4o", "fp_1")
    b = ChunkAssembler()
    b.feed(chunk(choice(content="a"), system_fingerprint=None))
    assert "system_fingerprint" not in b.completion() and "usage" not in b.completion()


def test_qwens_stream_through_the_rewriter_becomes_a_whole_answer():
    """The path a stream-only model takes for a client that asked for `stream: false`."""
    def ev(delta, finish=None):
        return ("data: " + json.dumps({"id": "c1", "created": 5, "model": "qwen3-max", "choices": [
            {"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n").encode()

    assembler = ChunkAssembler()
    rw = StreamRewriter(ChunkNormalizer("gpt-4o"), assembler)
    assert rw.run(ev({"content": "<think>hmm</think>Yes"}) + ev({}, "stop") + b"data: [DONE]\n\n") == b""
    message = assembler.completion()["choices"][0]["message"]
    assert (message["content"], message["reasoning_content"]) == ("Yes", "hmm")
    assert assembler.completion()["model"] == "gpt-4o"  # the name the client asked for
