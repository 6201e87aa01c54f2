"""Responses API -> chat completions, the request (api/responses/request.py): the checks before anything is
walked, the chat request's fields, and the Translation a later turn continues from."""

from __future__ import annotations

import pytest

from qwen_gateway.api.responses import request
from qwen_gateway.api.responses.request import MAX_INPUT_ITEMS, require_model, translate
from qwen_gateway.errors import GatewayError


@pytest.mark.parametrize("body", [{"input": "x"}, {"model": None, "input": "x"}])
def test_compact_without_a_model_is_refused_naming_it(body):
    with pytest.raises(GatewayError) as e:
        require_model(body)
    err = e.value
    assert (err.status, err.param, err.code, err.message) == (400, "model", "missing_required_parameter",
                                                              "Missing required parameter: 'model'.")
    require_model({"model": "gpt-5.5"})


FN = {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}


def refused(body: object) -> GatewayError:
    with pytest.raises(GatewayError) as e:
        translate(body)
    assert e.value.status == 400 and e.value.type == "invalid_request_error"
    return e.value


# ---- before anything is walked -----------------------------------------------------------------------------

@pytest.mark.parametrize("check", [request.check_request, translate])
def test_a_body_that_is_no_object_is_refused(check):
    with pytest.raises(GatewayError) as e:
        check(["input"])
    assert (e.value.status, e.value.code) == (400, "invalid_request_body")


def test_more_input_items_than_the_limit_are_refused_in_openais_words():
    with pytest.raises(GatewayError) as e:
        request.limit_input({"input": [{}] * (MAX_INPUT_ITEMS + 1)})
    assert (e.value.param, e.value.code) == ("input", "array_above_max_length")
    assert e.value.message == (f"Invalid 'input': array too long. Expected an array with maximum length "
                               f"{MAX_INPUT_ITEMS}, but got an array with length {MAX_INPUT_ITEMS + 1} instead.")
    request.limit_input({"input": [{}] * MAX_INPUT_ITEMS})  # at the limit: taken
    request.limit_input({"input": "x" * (MAX_INPUT_ITEMS + 1)})  # a string is one message


@pytest.mark.parametrize("body, param, code", [
    ({}, "input", "missing_required_parameter"),
    ({"input": 5}, "input", "invalid_type"),
    ({"input": "x", "tools": {"type": "function"}}, "tools", "invalid_type"),
    ({"input": "x", "model": 4}, "model", "invalid_type"),
    ({"input": "x", "stream_options": "on"}, "stream_options", "invalid_type"),
    ({"input": []}, "input", "invalid_value"),
    ({"input": ["hi"]}, "input[0]", "invalid_type"),
])
def test_a_malformed_request_is_refused_naming_the_field(body, param, code):
    e = refused(body)
    assert (e.param, e.code) == (param, code)


# ---- the chat request --------------------------------------------------------------------------------------

def test_a_string_input_is_one_user_message_after_the_instructions():
    chat = translate({"model": "m", "instructions": "be brief", "input": "hi"}).chat
    assert chat == {"model": "m", "stream": False, "messages": [{"role": "system", "content": "be brief"},
                                                                 {"role": "user", "content": "hi"}]}


def test_no_model_is_the_gateways_default_and_empty_instructions_are_none():
    chat = translate({"input": "hi", "instructions": "", "stream": True}).chat
    assert chat["model"] == "" and chat["stream"] is True and [m["role"] for m in chat["messages"]] == ["user"]


def test_the_fields_qwen_takes_are_carried_under_their_chat_names():
    chat = translate({"input": "hi", "max_output_tokens": 64, "temperature": 0.3, "top_p": 0.8, "user": "u",
                      "prompt_cache_key": "k", "text": {"verbosity": "low"}}).chat
    assert {k: chat[k] for k in ("max_completion_tokens", "temperature", "top_p", "user", "prompt_cache_key",
                                 "verbosity")} == {"max_completion_tokens": 64, "temperature": 0.3, "top_p": 0.8,
                                                   "user": "u", "prompt_cache_key": "k", "verbosity": "low"}


def test_a_json_schema_text_format_becomes_the_chat_response_format():
    fmt = {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True, "extra": 1}
    chat = translate({"input": "hi", "text": {"format": fmt}}).chat
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "out", "schema": {"type": "object"}, "strict": True}}
    assert translate({"input": "hi", "text": {"format": {"type": "json_object"}}}).chat["response_format"] == {
        "type": "json_object"}
    assert "response_format" not in translate({"input": "hi", "text": {"format": {"type": "text"}}}).chat


def test_a_reasoning_effort_is_sent_and_a_summary_alone_asks_for_thinking():
    t = translate({"input": "hi", "reasoning": {"effort": "high"}})
    assert t.chat["reasoning_effort"] == "high" and t.effort == "high" and "enable_thinking" not in t.chat
    summary = translate({"input": "hi", "reasoning": {"summary": "auto"}}).chat
    assert summary["enable_thinking"] is True and "reasoning_effort" not in summary


def test_tool_settings_go_with_tools_only():
    bare = translate({"input": "hi", "tool_choice": "required", "parallel_tool_calls": False}).chat
    assert "tool_choice" not in bare and "parallel_tool_calls" not in bare
    chat = translate({"input": "hi", "tools": [FN], "tool_choice": "required", "parallel_tool_calls": False}).chat
    assert (chat["tool_choice"], chat["parallel_tool_calls"]) == ("required", False)


def test_a_named_function_choice_becomes_the_chat_form():
    chat = translate({"input": "hi", "tools": [FN], "tool_choice": {"type": "function", "name": "f"}}).chat
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "f"}}


def test_tools_qwen_cannot_run_are_dropped_with_a_note():
    notes: list[str] = []
    t = translate({"input": "hi", "tools": [{"type": "file_search"}, {"type": "code_interpreter"}]}, notes=notes)
    assert "tools" not in t.chat and t.tools == {}
    assert "dropped tools Qwen cannot run: code_interpreter, file_search" in notes


def test_the_translation_keeps_the_history_then_this_requests_items():
    earlier = [{"type": "message", "role": "user", "content": "q1"}]
    now = {"type": "message", "role": "user", "content": "q2"}
    t = translate({"input": [now]}, earlier)
    assert t.items == [*earlier, now] and [m["content"] for m in t.chat["messages"]] == ["q1", "q2"]


def test_a_trailing_compaction_trigger_is_one_summarisation_call_without_tools():
    t = translate({"model": "m", "tools": [FN], "prompt_cache_key": "k",
                   "input": [{"role": "user", "content": "hi"}, {"type": "compaction_trigger"}]})
    assert t.compaction and t.tools == {} and "tools" not in t.chat
    assert t.chat["prompt_cache_key"] == "k" and t.chat["messages"][0]["role"] == "system"


def test_responses_to_chat_is_the_translations_chat():
    assert request.responses_to_chat({"input": "hi"}) == translate({"input": "hi"}).chat


def test_a_warm_up_may_hold_no_message_and_a_turn_may_not():
    assert translate({"model": "gpt-4o", "input": []}, warm_up=True).chat["messages"] == []
    with pytest.raises(GatewayError) as e:
        translate({"model": "gpt-4o", "input": []})
    assert e.value.status == 400 and e.value.param == "input"
