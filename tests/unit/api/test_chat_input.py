"""Property tests: no input makes a translator raise anything but a 4xx GatewayError, and no byte
sequence makes the stream path raise, return bytes, or return an empty chunk."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwen_gateway.api.chat import ChatStreamTranslator, validate_chat_request
from qwen_gateway.upstream.dashscope.answer import qwen_to_chat
from qwen_gateway.upstream.dashscope.request import chat_to_qwen
from qwen_gateway.upstream.dashscope.stream import ChunkNormalizer
from qwen_gateway.api.completions import CompletionsStreamTranslator, chat_to_completion, completions_to_chat
from qwen_gateway.api.embeddings import split_batches
from qwen_gateway.errors import GatewayError
from qwen_gateway.api.responses.output import chat_to_response
from qwen_gateway.api.responses.request import responses_to_chat
from qwen_gateway.api.responses.stream import ResponsesStreamTranslator
from qwen_gateway.sse import encode
from qwen_gateway.turn.stream_rewriter import StreamRewriter

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)
FIELDS = ["model", "messages", "input", "prompt", "stream", "tools", "tool_choice", "n", "instructions",
          "stream_options", "text", "reasoning", "max_output_tokens", "temperature", "echo", "suffix",
          "role", "content", "type", "function_call_output", "previous_response_id"]
bodies = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6)
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool", "x"])},
                                          optional={"content": json_values, "tool_calls": json_values}), max_size=4)
RELAXED = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _only_4xx(fn, *args):
    try:
        return fn(*args)
    except GatewayError as e:
        assert 400 <= e.status < 500
        return None


@RELAXED
@given(bodies, messages)
def test_request_translators_raise_only_4xx(body, msgs):
    if msgs:
        body = {**body, "messages": msgs}
    chat = _only_4xx(validate_chat_request, body)
    if chat is not None:
        json.dumps(chat_to_qwen(chat, model="coder-model", oauth=True))
    chat = _only_4xx(responses_to_chat, body)
    if chat is not None:
        json.dumps(chat)
    chat = _only_4xx(completions_to_chat, body)
    if chat is not None:
        json.dumps(chat)


@RELAXED
@given(json_values | st.lists(st.lists(st.integers(-5, 200_000), max_size=5), max_size=3))
def test_embedding_inputs_raise_only_4xx(value):
    batches = _only_4xx(split_batches, {"model": "text-embedding-v4", "input": value})
    if batches is not None:
        json.dumps(batches)
        assert batches and all(1 <= len(b["input"]) <= 10 and all(isinstance(t, str) for t in b["input"])
                               for b in batches)


answers = st.fixed_dictionaries({}, optional={
    "choices": st.lists(st.fixed_dictionaries({}, optional={
        "message": st.fixed_dictionaries({}, optional={"content": st.none() | st.text(max_size=30),
                                                       "reasoning_content": st.none() | st.text(max_size=10),
                                                       "tool_calls": st.lists(st.fixed_dictionaries({}, optional={
                                                           "id": st.text(max_size=5),
                                                           "function": st.fixed_dictionaries({}, optional={
                                                               "name": st.text(max_size=5),
                                                               "arguments": json_values})}), max_size=2)}),
        "finish_reason": st.none() | st.sampled_from(["stop", "length", "tool_calls"])}), max_size=2),
    "usage": st.none() | st.fixed_dictionaries({}, optional={"prompt_tokens": st.integers(0, 9),
                                                             "completion_tokens": st.integers(0, 9),
                                                             "cached_tokens": st.integers(0, 9)})})


@RELAXED
@given(answers)
def test_answer_translators_never_raise(answer):
    chat = qwen_to_chat(answer, model="gpt-4o")
    json.dumps(chat_to_response(chat, {"model": "gpt-4o"}, response_id="resp_1", created_at=1))
    json.dumps(chat_to_completion(chat, {"model": "gpt-4o"}))


def translators():
    return [ChatStreamTranslator(True), ChatStreamTranslator(False),
            ResponsesStreamTranslator({"model": "m"}, response_id="resp_x", created_at=1),
            CompletionsStreamTranslator({"model": "m", "stream_options": {"include_usage": True}})]


chunks = st.lists(st.one_of(json_values, st.fixed_dictionaries({}, optional={
    "choices": st.lists(st.fixed_dictionaries({}, optional={
        "index": st.integers(0, 2) | st.text(max_size=2),
        "delta": st.fixed_dictionaries({}, optional={
            "content": st.none() | st.text(max_size=10), "reasoning_content": st.text(max_size=5),
            "tool_calls": st.lists(st.fixed_dictionaries({}, optional={
                "index": st.integers(0, 3), "id": st.text(max_size=4),
                "function": st.fixed_dictionaries({}, optional={"name": st.text(max_size=4),
                                                                "arguments": st.text(max_size=6)})}), max_size=2)}),
        "finish_reason": st.none() | st.sampled_from(["stop", "tool_calls", "length"])}), max_size=2),
    "usage": st.none() | json_values})), max_size=8)


@RELAXED
@given(chunks, st.lists(st.integers(0, 2000), max_size=6), st.booleans())
def test_stream_path_never_raises_and_respects_mitmproxy_contract(items, cuts, done):
    body = b"".join(encode(c) if not isinstance(c, str) else encode(c) for c in items)
    if done:
        body += b"data: [DONE]\n\n"
    for translator in translators():
        rw = StreamRewriter(ChunkNormalizer("gpt-4o"), translator, capture_limit=1 << 16)
        prev = 0
        for c in sorted(x for x in cuts if x <= len(body)) + [len(body)]:
            out = rw(body[prev:c]) if body[prev:c] else []
            prev = c
            assert isinstance(out, list) and b"" not in out
        out = rw(b"")
        assert isinstance(out, list) and b"" not in out
        assert rw.finished  # every stream ends: [DONE], a finish, or an error event


@RELAXED
@given(st.binary(max_size=400))
def test_raw_garbage_never_breaks_the_stream_callable(blob):
    for translator in translators():
        rw = StreamRewriter(ChunkNormalizer("m"), translator)
        assert isinstance(rw(blob), list)
        assert isinstance(rw(b""), list)


def test_deeply_nested_and_huge_inputs():
    deep = current = {}
    for _ in range(5000):
        current["content"] = {}
        current = current["content"]
    for fn in (validate_chat_request, responses_to_chat, completions_to_chat):
        _only_4xx(fn, {"messages": [deep], "input": [deep], "prompt": deep})
    big = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * (8 << 20)}]}
    content = chat_to_qwen(validate_chat_request(big), model="m", oauth=False)["messages"][0]["content"]
    # (a prompt this long carries the gateway's cache marker: its text becomes a marked part)
    assert len(content if isinstance(content, str) else "".join(p["text"] for p in content)) == 8 << 20
