"""Responses objects complete and exact (issue 51, item 1): the fields the Open Responses spec requires besides
OpenAI's, with the values used; the rules the spec states (a tool output answers a call; the compact endpoint
needs a model). A failed WebSocket continuation evicting its previous response: tests/e2e/test_e2e_responses_exact.py."""

from __future__ import annotations

import json
import time

import pytest

from helpers.openai_schema import validate, validate_stream_event
from qwen_gateway.api.responses.output import chat_to_response, response_object, upgraded
from qwen_gateway.api.responses.request import require_model, translate
from qwen_gateway.api.responses.stream import ResponsesStreamTranslator
from qwen_gateway.errors import GatewayError
from qwen_gateway.sse import SSEDecoder

FN = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
CALL = {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"}
OUTPUT = {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}
USED = {"temperature": 1.0, "top_p": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}


def chat(finish: str = "stop") -> dict:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def sampling_of(response: dict) -> dict:
    return {k: response[k] for k in USED}


def events(translator: ResponsesStreamTranslator, chunks: list[dict], end: str = "finish") -> list[dict]:
    raw = b"".join(b for c in chunks for b in translator.feed(c))
    raw += b"".join(translator.finish() if end == "finish" else translator.fail({"message": "broken"}))
    out = [json.loads(e.data) for e in SSEDecoder().feed(raw)]
    for e in out:
        validate_stream_event(e)
    return out


def delta(text: str, finish: str | None = None) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


# ---- the values used -------------------------------------------------------------------------------------------

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


# ---- completed_at ----------------------------------------------------------------------------------------------

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


def test_stream_snapshots_carry_completed_at_only_at_completion():
    out = events(ResponsesStreamTranslator({"model": "m"}, response_id="r", created_at=1), [delta("hi", "stop")])
    snaps = {e["type"]: e["response"] for e in out if "response" in e}
    assert snaps["response.created"]["completed_at"] is None and snaps["response.in_progress"]["completed_at"] is None
    assert isinstance(snaps["response.completed"]["completed_at"], int)
    assert all(sampling_of(r) == USED for r in snaps.values())


def test_incomplete_failed_and_unkept_streams_have_none():
    cut = events(ResponsesStreamTranslator({}, response_id="r", created_at=1), [delta("hi", "length")])
    assert cut[-1]["type"] == "response.incomplete" and cut[-1]["response"]["completed_at"] is None
    broken = events(ResponsesStreamTranslator({}, response_id="r", created_at=1), [delta("hi")], end="fail")
    assert broken[-1]["type"] == "response.failed" and broken[-1]["response"]["completed_at"] is None
    t = ResponsesStreamTranslator({}, response_id="r", created_at=1)
    held = t.feed(delta("hi", "stop")) + t.finish()
    t.unkept(held, {"message": "not stored"})
    assert t.response()["status"] == "failed" and t.response()["completed_at"] is None


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


# ---- a tool output answers a call ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, words", [("function_call_output", "function call output"),
                                         ("custom_tool_call_output", "custom tool call output")])
def test_an_output_without_its_call_is_refused_as_openai_does(kind, words):
    with pytest.raises(GatewayError) as e:
        translate({"model": "m", "input": [{"role": "user", "content": "x"}, {**OUTPUT, "type": kind}]})
    err = e.value
    assert (err.status, err.type, err.param, err.code) == (400, "invalid_request_error", "input", None)
    assert err.message == f"No tool call found for {words} with call_id call_1."


def test_an_output_answers_a_call_of_the_input_or_of_the_chain():
    sent = translate({"model": "m", "tools": [FN], "input": [{"role": "user", "content": "x"}, CALL, OUTPUT]})
    assert [m["role"] for m in sent.chat["messages"]] == ["user", "assistant", "tool"]
    chained = translate({"model": "m", "input": [OUTPUT]}, [{"role": "user", "content": "x"}, CALL])
    assert chained.chat["messages"][-1] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    older = [{"role": "user", "content": "x"}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]}]
    assert translate({"model": "m", "input": [OUTPUT]}, chat_history=older).chat["messages"][-1]["role"] == "tool"


def test_an_output_before_its_call_or_after_another_is_refused():
    for items in ([OUTPUT, CALL], [CALL, {**OUTPUT, "call_id": "call_2"}]):
        with pytest.raises(GatewayError) as e:
            translate({"model": "m", "input": [{"role": "user", "content": "x"}, *items]})
        assert e.value.param == "input"


def test_a_stored_chain_is_taken_as_it_was_kept():
    # a chain an older gateway stored with an output answering nothing: continuing from it still works
    t = translate({"model": "m", "input": "go on"}, [{"role": "user", "content": "x"}, OUTPUT])
    assert [m["role"] for m in t.chat["messages"]] == ["user", "tool", "user"]


# ---- the compact endpoint needs a model ------------------------------------------------------------------------

@pytest.mark.parametrize("body", [{"input": "x"}, {"model": None, "input": "x"}])
def test_compact_without_a_model_is_refused_naming_it(body):
    with pytest.raises(GatewayError) as e:
        require_model(body)
    err = e.value
    assert (err.status, err.param, err.code, err.message) == (400, "model", "missing_required_parameter",
                                                              "Missing required parameter: 'model'.")
    require_model({"model": "gpt-5.5"})
