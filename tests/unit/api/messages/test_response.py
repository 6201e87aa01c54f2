"""The chat answer -> an Anthropic Message (api/messages/response.py): blocks, stop reasons, usage."""

from __future__ import annotations

import pytest

from qwen_gateway.api.messages import response
from qwen_gateway.api.messages.response import chat_to_message, usage


def test_a_chat_answer_becomes_a_message():
    answer = {"choices": [{"finish_reason": "tool_calls", "message": {
        "content": "Running it.", "reasoning_content": "I should run ls",
        "tool_calls": [{"id": "call_1", "function": {"name": "Bash", "arguments": '{"command": "ls"}'}}]}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 60}}}
    m = chat_to_message(answer, model="claude-opus-5-5", sign=lambda t: "sig:" + t)
    assert m["model"] == "claude-opus-5-5" and m["stop_reason"] == "tool_use" and m["id"].startswith("msg_")
    assert m["content"] == [{"type": "thinking", "thinking": "I should run ls", "signature": "sig:I should run ls"},
                            {"type": "text", "text": "Running it."},
                            {"type": "tool_use", "id": "call_1", "name": "Bash", "input": {"command": "ls"}}]
    assert m["usage"] == {"input_tokens": 40, "output_tokens": 7, "cache_read_input_tokens": 60,
                          "cache_creation_input_tokens": 0}


@pytest.mark.parametrize("finish,stop", [("stop", "end_turn"), ("length", "max_tokens"),
                                         ("tool_calls", "tool_use"), ("content_filter", "refusal")])
def test_stop_reasons(finish, stop):
    m = chat_to_message({"choices": [{"finish_reason": finish, "message": {"content": "x"}}]}, model="m",
                        sign=str)
    assert m["stop_reason"] == stop


def test_usage_counts_cache_creation_apart():
    assert usage({"prompt_tokens": 50, "completion_tokens": 1,
                  "prompt_tokens_details": {"cached_tokens": 10, "cache_creation_input_tokens": 30}}) == {
        "input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 10, "cache_creation_input_tokens": 30}


def answer(message: dict, finish: str = "stop", **chat) -> dict:
    return {"choices": [{"finish_reason": finish, "message": message}], **chat}


@pytest.mark.parametrize("arguments, expected", [
    ({"a": 1}, {"a": 1}),
    ('{"a": 1}', {"a": 1}),
    ("", {}),
    ("  ", {}),
    (None, {}),
    ("{broken", {"_raw_arguments": "{broken"}),  # kept for the client to see, never lost
    ("[1, 2]", {"_value": [1, 2]}),  # Anthropic's input is an object
])
def test_a_calls_arguments_become_its_input_object(arguments, expected):
    assert response.tool_input(arguments) == expected


@pytest.mark.parametrize("finish", [None, "weird", 3])
def test_an_unknown_finish_reason_ends_the_turn(finish):
    assert response.stop_reason(finish) == "end_turn"


def test_usage_never_counts_below_zero_and_ignores_what_is_no_count():
    assert usage({"prompt_tokens": 5, "completion_tokens": True,
                  "prompt_tokens_details": {"cached_tokens": 9}}) == {
        "input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 9, "cache_creation_input_tokens": 0}
    assert usage(None) == {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0,
                           "cache_creation_input_tokens": 0}


def test_a_stop_sequence_cuts_the_text_and_drops_the_calls_after_it():
    m = chat_to_message(answer({"content": "one END two", "tool_calls": [
        {"id": "c1", "function": {"name": "X", "arguments": "{}"}}]}, "tool_calls"), model="m", sign=str,
        stops=("END",))
    assert m["content"] == [{"type": "text", "text": "one "}]
    assert (m["stop_reason"], m["stop_sequence"]) == ("stop_sequence", "END")


def test_no_stop_sequence_found_is_qwens_own_stop():
    m = chat_to_message(answer({"content": "one two"}), model="m", sign=str, stops=("END",))
    assert (m["stop_reason"], m["stop_sequence"]) == ("end_turn", None)


def test_thinking_not_asked_for_is_left_out():
    m = chat_to_message(answer({"content": "x", "reasoning_content": "why"}), model="m", sign=str, thinking=False)
    assert [b["type"] for b in m["content"]] == ["text"]


def test_a_call_without_an_id_gets_one_in_anthropics_form():
    m = chat_to_message(answer({"tool_calls": [{"function": {"name": "X", "arguments": "{}"}}]}, "tool_calls"),
                        model="m", sign=str)
    (call,) = m["content"]
    assert call["type"] == "tool_use" and call["id"].startswith("toolu_") and len(call["id"]) == 6 + 48


def test_an_answer_without_choices_is_an_empty_message():
    m = chat_to_message({}, model="m", sign=str)
    assert (m["content"], m["stop_reason"], m["type"], m["role"]) == ([], "end_turn", "message", "assistant")


def test_message_ids_are_anthropics_shape():
    first, second = response.new_message_id(), response.new_message_id()
    assert first.startswith("msg_") and len(first) == 4 + 48 and first != second


def test_usage_says_qwens_cache_writes_by_lifetime_as_anthropic_does():
    """Model Studio's `cache_creation` (5-minute and, on Qwen4, hour-long writes) becomes Anthropic's own
    `usage.cache_creation`; without it the usage carries none."""
    qwen = {"prompt_tokens": 3000, "completion_tokens": 2, "prompt_tokens_details": {
        "cached_tokens": 0, "cache_creation_input_tokens": 2500, "cache_type": "ephemeral",
        "cache_creation": {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 2000}}}
    assert usage(qwen)["cache_creation"] == {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 2000}
    qwen["prompt_tokens_details"]["cache_creation"] = {"ephemeral_5m_input_tokens": 2500}
    assert usage(qwen)["cache_creation"] == {"ephemeral_5m_input_tokens": 2500, "ephemeral_1h_input_tokens": 0}
    assert "cache_creation" not in usage({"prompt_tokens": 5, "completion_tokens": 1})
