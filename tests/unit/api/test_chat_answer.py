"""Qwen's tool calls given back as the client offered its tools (api/chat_answer.py): legacy `functions`, custom
tools, whole answers and streamed chunks."""

from __future__ import annotations

from qwen_gateway.api import chat_answer

LEGACY = {"functions": [{"name": "f", "parameters": {"type": "object"}}]}
CUSTOM = {"tools": [{"type": "custom", "custom": {"name": "patch"}},
                    {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}


def answer(*calls: dict, finish: str = "tool_calls") -> dict:
    return {"id": "c", "choices": [{"index": 0, "finish_reason": finish,
                                    "message": {"role": "assistant", "content": None, "tool_calls": list(calls)}}]}


def call(name: str, arguments: str, cid: str = "call_1") -> dict:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_an_answer_to_a_plain_tools_request_is_unchanged():
    whole = answer(call("f", "{}"))
    assert chat_answer.to_client(whole, {"tools": CUSTOM["tools"][1:]}) is whole


def test_a_service_tier_asked_is_answered_default():
    assert chat_answer.to_client({"choices": []}, {"service_tier": "flex"})["service_tier"] == "default"


def test_a_legacy_client_gets_the_first_call_as_function_call():
    out = chat_answer.to_client(answer(call("f", '{"a":1}'), call("g", "{}", "call_2")), LEGACY)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "function_call"
    assert choice["message"] == {"role": "assistant", "content": None,
                                 "function_call": {"name": "f", "arguments": '{"a":1}'}}


def test_a_custom_tools_call_carries_its_decoded_text():
    out = chat_answer.to_client(answer(call("patch", '{"input": "*** Begin\\n"}'), call("f", "{}", "call_2")), CUSTOM)
    custom, plain = out["choices"][0]["message"]["tool_calls"]
    assert custom == {"id": "call_1", "type": "custom", "custom": {"name": "patch", "input": "*** Begin\n"}}
    assert plain == call("f", "{}", "call_2")


def chunk(delta: dict, finish: str | None = None) -> dict:
    return {"id": "c", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_a_streamed_custom_call_is_held_and_sent_whole_with_the_last_chunk():
    r = chat_answer.CallRewriter(CUSTOM)
    first = r.rewrite(chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "patch",
                                                                                      "arguments": '{"inp'}}]}))
    second = r.rewrite(chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ut": "x"}'}}]}))
    last = r.rewrite(chunk({}, "tool_calls"))
    assert first is None and second is None  # nothing to send while the text is not whole
    assert last["choices"][0]["delta"]["tool_calls"] == [
        {"index": 0, "id": "call_1", "type": "custom", "custom": {"name": "patch", "input": "x"}}]


def test_a_streamed_function_call_passes_as_it_comes():
    r = chat_answer.CallRewriter(CUSTOM)
    c = chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": "{}"}}]})
    assert r.rewrite(c)["choices"][0]["delta"]["tool_calls"] == c["choices"][0]["delta"]["tool_calls"]


def test_a_legacy_stream_says_function_call():
    r = chat_answer.CallRewriter(LEGACY)
    out = r.rewrite(chunk({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "{"}},
                                          {"index": 1, "function": {"name": "g", "arguments": "{"}}]}))
    assert out["choices"][0]["delta"] == {"function_call": {"name": "f", "arguments": "{"}}
    assert r.rewrite(chunk({}, "tool_calls"))["choices"][0]["finish_reason"] == "function_call"


def test_a_rewriter_for_plain_tools_changes_nothing():
    r = chat_answer.CallRewriter({})
    c = chunk({"content": "x"})
    assert not r.active and r.rewrite(c) is c
