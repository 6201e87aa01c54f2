"""The way out for a whole answer (api/responses/output.py): the Response object with every field the specs
require and the values used, its output items, usage in the Responses API's terms, and an older stored
Response brought up to date."""

from __future__ import annotations

import time

import pytest

from helpers.openai_schema import validate
from qwen_gateway.api.responses import output
from qwen_gateway.api.responses.output import chat_to_response, response_object, upgraded
from qwen_gateway.errors import GatewayError

FN = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
USED = {"temperature": 1.0, "top_p": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}


def chat(finish: str = "stop") -> dict:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def sampling_of(response: dict) -> dict:
    return {k: response[k] for k in USED}


def test_sampling_not_sent_is_the_apis_defaults_never_null():
    r = response_object({"model": "m"}, response_id="r", created_at=1, status="in_progress", output=[])
    validate("Response", r)
    assert sampling_of(r) == USED


def test_sampling_sent_is_echoed_as_a_number():
    r = response_object({"model": "m", "temperature": 0, "top_p": 0.5}, response_id="r", created_at=1,
                        status="in_progress", output=[])
    assert sampling_of(r) == {**USED, "temperature": 0.0, "top_p": 0.5}


def test_a_function_tools_strict_is_false_unless_sent():
    tools = [FN, {**FN, "name": "strict_one", "strict": True}, {**FN, "name": "loose", "strict": None}]
    r = response_object({"model": "m", "tools": tools}, response_id="r", created_at=1, status="queued", output=[])
    validate("Response", r)
    assert [(t["name"], t["strict"]) for t in r["tools"]] == [("get_weather", False), ("strict_one", True),
                                                               ("loose", False)]


def test_a_whole_answer_is_completed_at_now_and_a_cut_one_never():
    before = int(time.time())
    done = chat_to_response(chat(), {"model": "m"}, response_id="r", created_at=before)
    validate("Response", done)
    assert before <= done["completed_at"] <= time.time()
    cut = chat_to_response(chat("length"), {"model": "m"}, response_id="r", created_at=before)
    assert cut["status"] == "incomplete" and cut["completed_at"] is None


def test_completed_at_only_when_the_status_is_completed():
    for status in ("queued", "in_progress", "failed", "incomplete", "cancelled"):
        r = response_object({}, response_id="r", created_at=1, status=status, output=[], completed_at=5)
        assert r["completed_at"] is None, status


def test_a_response_stored_by_an_older_gateway_is_read_as_one_made_now():
    old = {"id": "r", "object": "response", "created_at": 1, "status": "completed", "error": None,
           "incomplete_details": None, "instructions": None, "model": "m", "output": [], "parallel_tool_calls": True,
           "metadata": {}, "tool_choice": "auto", "temperature": None, "top_p": 0.5,
           "tools": [{"strict": None, "parameters": None, "type": "function", "name": "f"}]}
    now = upgraded(old)
    validate("Response", now)
    assert sampling_of(now) == {**USED, "top_p": 0.5} and now["completed_at"] is None
    assert now["tools"][0]["strict"] is False
    made = chat_to_response(chat(), {"model": "m", "tools": [FN]}, response_id="r", created_at=1)
    assert upgraded(made) == made  # what this gateway stores is already so


# ---- usage, echoes and items -------------------------------------------------------------------------------

def test_usage_in_the_responses_terms():
    assert output.usage_to_responses({"prompt_tokens": 10, "completion_tokens": 4, "prompt_tokens_details": {
        "cached_tokens": 6, "cache_creation_input_tokens": 2}, "completion_tokens_details": {
        "reasoning_tokens": 3}}) == {
        "input_tokens": 10, "input_tokens_details": {"cached_tokens": 6, "cache_write_tokens": 2},
        "output_tokens": 4, "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 14}
    assert output.usage_to_responses(None) is None


@pytest.mark.parametrize("choice, echoed", [(None, "auto"), ("none", "none"), ("sometimes", "auto"),
                                            ({"type": "function", "name": "f"}, {"type": "function", "name": "f"}),
                                            ({"name": "f"}, "auto")])
def test_tool_choice_is_echoed_as_sent_else_auto(choice, echoed):
    assert output.echo_tool_choice(choice) == echoed


@pytest.mark.parametrize("finish, reason", [("length", "max_output_tokens"), ("content_filter", "content_filter"),
                                            ("stop", None), ("tool_calls", None), (None, None)])
def test_the_finish_reasons_that_leave_a_response_incomplete(finish, reason):
    assert output.incomplete_reason(finish) == reason


def test_a_response_echoes_the_request_and_defaults_what_it_did_not_send():
    r = response_object({"model": "m", "store": False, "background": True, "parallel_tool_calls": False,
                         "metadata": {"a": "b"}, "truncation": "auto", "user": 5, "instructions": ["x"]},
                        response_id="resp_1", created_at=7, status="queued", output=[])
    assert {k: r[k] for k in ("id", "object", "created_at", "status", "store", "background", "parallel_tool_calls",
                              "metadata", "truncation", "user", "instructions", "usage", "text")} == {
        "id": "resp_1", "object": "response", "created_at": 7, "status": "queued", "store": False,
        "background": True, "parallel_tool_calls": False, "metadata": {"a": "b"}, "truncation": "auto",
        "user": None, "instructions": None, "usage": None, "text": {"format": {"type": "text"}}}


def test_a_whole_answer_is_its_message_then_its_calls_each_as_an_item():
    chat = {"choices": [{"finish_reason": "tool_calls", "message": {"content": "running", "tool_calls": [
        {"id": "call_1", "function": {"name": "f", "arguments": "{}"}}]}}]}
    r = chat_to_response(chat, {"model": "m"}, response_id="resp_1", created_at=1)
    msg, call = r["output"]
    assert msg["type"] == "message" and msg["content"][0]["text"] == "running" and msg["status"] == "completed"
    assert (call["type"], call["call_id"], call["name"], call["status"]) == ("function_call", "call_1", "f",
                                                                             "completed")
    assert r["status"] == "completed"


def test_max_tool_calls_keeps_the_first_calls():
    calls = [{"id": f"c{i}", "function": {"name": "f", "arguments": "{}"}} for i in range(3)]
    chat = {"choices": [{"finish_reason": "tool_calls", "message": {"content": None, "tool_calls": calls}}]}
    r = chat_to_response(chat, {"model": "m", "max_tool_calls": 2}, response_id="r", created_at=1)
    assert [i["call_id"] for i in r["output"]] == ["c0", "c1"]


def test_a_cut_answer_marks_its_last_item_incomplete():
    chat = {"choices": [{"finish_reason": "length", "message": {"content": "half"}}]}
    r = chat_to_response(chat, {"model": "m"}, response_id="r", created_at=1)
    assert r["status"] == "incomplete" and r["incomplete_details"] == {"reason": "max_output_tokens"}
    assert r["output"][0]["status"] == "incomplete"


def test_a_compaction_answer_is_one_sealed_item():
    sealed: list[tuple[str, dict]] = []

    def seal(kind: str, payload: dict) -> str:
        sealed.append((kind, payload))
        return "sealed"
    r = chat_to_response({"choices": [{"message": {"content": "  summary  "}}]}, {"model": "m"}, response_id="r",
                         created_at=1, seal=seal, compaction=True)
    (item,) = r["output"]
    assert item["type"] == "compaction" and item["encrypted_content"] == "sealed"
    assert sealed == [("compaction", {"summary": "summary", "model": "m"})]


@pytest.mark.parametrize("content", ["", "   ", None])
def test_a_compaction_without_a_summary_is_a_502(content):
    with pytest.raises(GatewayError) as e:
        chat_to_response({"choices": [{"message": {"content": content}}]}, {}, response_id="r", created_at=1,
                         seal=lambda k, p: "s", compaction=True)
    assert (e.value.status, e.value.code) == (502, "compaction_failed")


def test_an_answer_without_choices_is_an_empty_completed_response():
    r = chat_to_response({}, {"model": "m"}, response_id="r", created_at=1)
    assert (r["output"], r["status"]) == ([], "completed")
