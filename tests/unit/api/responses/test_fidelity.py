"""Responses fields the gateway honours or refuses (never an answer that pretends), and what a Response
echoes of its request — each checked against OpenAI's published schemas."""

from __future__ import annotations

import json

import pytest

from helpers.openai_schema import validate, validate_stream_event
from qwen_gateway.api.responses.history import input_items
from qwen_gateway.api.responses.output import chat_to_response
from qwen_gateway.api.responses.request import translate
from qwen_gateway.api.responses.stream import ResponsesStreamTranslator
from qwen_gateway.errors import GatewayError
from qwen_gateway.sse import SSEDecoder

FN_A = {"type": "function", "name": "alpha", "parameters": {"type": "object", "properties": {}}}
FN_B = {"type": "function", "name": "beta", "parameters": {"type": "object", "properties": {}}}
NS = {"type": "namespace", "name": "clock", "description": "Time", "tools": [
    {"type": "function", "name": "sleep", "parameters": {"type": "object", "properties": {}}}]}
BODY = {"model": "qwen3-coder-plus", "input": "hi", "tools": [FN_A, FN_B, NS]}


def names(chat: dict) -> list[str]:
    return [t["function"]["name"] for t in chat.get("tools") or []]


def refused(body: dict) -> GatewayError:
    with pytest.raises(GatewayError) as e:
        translate(body)
    return e.value


def chat_answer(content: str | None = None, calls: int = 0, finish: str = "stop") -> dict:
    tool_calls = [{"id": f"call_{i}", "type": "function", "function": {"name": "alpha", "arguments": "{}"}}
                  for i in range(calls)]
    message = {"role": "assistant", "content": content, **({"tool_calls": tool_calls} if calls else {})}
    return {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}


def whole(request: dict, chat: dict) -> dict:
    response = chat_to_response(chat, request, response_id="resp_1", created_at=1)
    validate("Response", response)
    return response


def streamed(request: dict, chunks: list[dict]) -> list[dict]:
    t = ResponsesStreamTranslator(request, response_id="resp_1", created_at=1)
    raw = b"".join(b for c in chunks for b in t.feed(c)) + b"".join(t.finish())
    events = [json.loads(e.data) for e in SSEDecoder().feed(raw)]
    for e in events:
        validate_stream_event(e)
    return events


def chunk(delta: dict, finish: str | None = None) -> dict:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def call_chunks(n: int) -> list[dict]:
    return [chunk({"tool_calls": [{"index": i, "id": f"call_{i}", "function": {"name": "alpha", "arguments": "{}"}}]})
            for i in range(n)] + [chunk({}, "tool_calls")]


# ---- refused: a 400 naming the field -----------------------------------------------------------------


# ---- allowed_tools: only the listed tools, mode -> tool_choice ----------------------------------------


# ---- max_tool_calls: honoured by keeping the first calls ---------------------------------------------


def test_max_tool_calls_keeps_the_first_calls_whole_and_streamed():
    request = {**BODY, "max_tool_calls": 2}
    response = whole(request, chat_answer(calls=3, finish="tool_calls"))
    assert [i["call_id"] for i in response["output"]] == ["call_0", "call_1"]
    assert response["max_tool_calls"] == 2
    events = streamed(request, call_chunks(3))
    final = events[-1]["response"]
    assert [i["call_id"] for i in final["output"]] == ["call_0", "call_1"]
    assert sum(e["type"] == "response.output_item.added" for e in events) == 2
    assert len(whole(BODY, chat_answer(calls=3, finish="tool_calls"))["output"]) == 3


# ---- echoes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("choice", [{"type": "function", "name": "alpha"},
                                    {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function",
                                                                                          "name": "alpha"}]},
                                    "required", "none"])
def test_tool_choice_is_echoed_as_sent(choice):
    request = {**BODY, "tool_choice": choice}
    assert whole(request, chat_answer("ok"))["tool_choice"] == choice
    events = streamed(request, [chunk({"content": "ok"}, "stop")])
    assert events[0]["response"]["tool_choice"] == choice and events[-1]["response"]["tool_choice"] == choice


def test_no_tool_choice_is_echoed_as_auto():
    assert whole(BODY, chat_answer("ok"))["tool_choice"] == "auto"


@pytest.mark.parametrize("sent, echoed", [(None, "disabled"), ("disabled", "disabled"), ("auto", "auto")])
def test_truncation_is_echoed(sent, echoed):
    request = {**BODY, **({"truncation": sent} if sent else {})}
    assert whole(request, chat_answer("ok"))["truncation"] == echoed
    assert streamed(request, [chunk({"content": "ok"}, "stop")])[-1]["response"]["truncation"] == echoed


@pytest.mark.parametrize("sent", [None, "auto", "flex", "priority"])
def test_service_tier_says_the_tier_that_served(sent):
    request = {**BODY, **({"service_tier": sent} if sent else {})}
    assert whole(request, chat_answer("ok"))["service_tier"] == "default"
    assert streamed(request, [chunk({"content": "ok"}, "stop")])[0]["response"]["service_tier"] == "default"


def test_a_message_cut_off_is_incomplete_whole_and_streamed():
    response = whole(BODY, chat_answer("half a sent", finish="length"))
    assert response["status"] == "incomplete" and response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][-1]["status"] == "incomplete"
    events = streamed(BODY, [chunk({"content": "half a sent"}), chunk({}, "length")])
    done = [e for e in events if e["type"] == "response.output_item.done"]
    assert done[-1]["item"]["status"] == "incomplete"
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["output"][-1]["status"] == "incomplete"
    assert whole(BODY, chat_answer("all of it"))["output"][-1]["status"] == "completed"


def test_a_call_cut_off_is_incomplete():
    response = whole(BODY, chat_answer("calling", calls=2, finish="length"))
    assert [i["status"] for i in response["output"]] == ["completed", "completed", "incomplete"]


def test_input_items_carry_a_status_where_the_spec_lists_one():
    items = input_items({"input": [
        {"type": "message", "role": "user", "content": "hi"},
        {"type": "function_call", "call_id": "c1", "name": "alpha", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
        {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": "*** Begin"},
        {"type": "custom_tool_call_output", "call_id": "c2", "output": "done"},
        {"type": "function_call_output", "call_id": "c3", "output": "late", "status": "incomplete"}]})
    assert [i["status"] for i in items] == ["completed"] * 5 + ["incomplete"]
    validate("ResponseItemList", {"object": "list", "data": items, "has_more": False,
                                  "first_id": items[0]["id"], "last_id": items[-1]["id"]})


# ---- background responses the gateway no longer runs ------------------------------------------------


def test_a_background_response_left_running_by_a_stopped_gateway_reads_failed(tmp_path):
    import asyncio

    from qwen_gateway.turn.background import BackgroundRuns
    from qwen_gateway.api.responses.retrieve import stored
    from qwen_gateway.stores.responses import ResponseStore

    store = ResponseStore(tmp_path / "responses.sqlite3")
    queued = {**whole({**BODY, "background": True}, chat_answer("x")), "status": "queued", "output": []}
    store.put(queued, {"items": []}, [], owner="")
    runs = BackgroundRuns(runner=None)  # type: ignore[arg-type]  # a fresh process: runs nothing
    answer = json.loads(asyncio.run(stored(store, "GET", queued["id"], {}, "", runs)).content)
    assert answer["status"] == "failed" and "stopped" in answer["error"]["message"]
    validate("Response", answer)
    with pytest.raises(GatewayError) as e:
        asyncio.run(stored(store, "GET", queued["id"], {"stream": "true"}, "", runs))
    assert e.value.param == "stream"
    cancelled = json.loads(asyncio.run(stored(store, "POST", queued["id"] + "/cancel", {}, "", runs)).content)
    assert cancelled["status"] == "failed"  # answered as it ended
