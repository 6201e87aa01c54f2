"""Responses objects complete and exact, and the rules the spec states (issue 51, item 1), through a real
mitmdump with openai-python.

- Every Response — whole, every snapshot event of a stream (`response.created`, `.in_progress`, `.completed`,
  `.incomplete`, `.failed`), over the WebSocket, queued in the background, stored (GET /v1/responses/{id}) —
  is valid against the spec's `Response` schema and carries, besides the fields it requires, what the Open
  Responses specification requires: `completed_at` (unix seconds when completed, else null), the sampling
  values used (`temperature` and `top_p` 1.0, `presence_penalty` and `frequency_penalty` 0.0 when the client
  sent none, never null) and every function tool's `strict` (false when not sent: the gateway does not make
  Qwen keep to the schema). Were: no `completed_at`, `temperature`/`top_p` null, no penalties, `strict: null`.
- `POST /v1/responses/compact` without `model` is 400 naming `model` (was 200).
- A `function_call_output` whose call is nowhere in the input or the previous response's chain is 400
  "No tool call found for function call output with call_id <id>." param `input`, over HTTP and WebSocket
  (was sent to Qwen as an orphan `tool` message).
- Over the WebSocket, a continuation turn that failed evicts its `previous_response_id`: the next turn on it
  fails `previous_response_not_found` (was: continued as if nothing had happened).
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
import websocket

from helpers.openai_schema import DOC, validate

pytestmark = pytest.mark.e2e

# What OpenAI's Response schema requires, and what the Open Responses specification requires besides (`usage`
# and `user` null until known or when not sent, as OpenAI's own response.created example shows them)
SPEC_REQUIRED = set(DOC["components"]["schemas"]["Response"]["allOf"][2]["required"])
OPEN_REQUIRED = {"completed_at", "status", "previous_response_id", "truncation", "text", "presence_penalty",
                 "frequency_penalty", "top_logprobs", "reasoning", "max_output_tokens", "max_tool_calls", "store",
                 "background", "service_tier", "safety_identifier", "prompt_cache_key", "usage", "user"}
DEFAULTS = {"temperature": 1.0, "top_p": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}  # no `strict`
SNAPSHOTS = ("response.created", "response.in_progress", "response.completed", "response.incomplete",
             "response.failed")


def client(gw):
    import openai
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=30)


def user(text: str) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def exact(response: dict, status: str, sent: dict | None = None) -> dict:
    """`response` valid against the spec, every required field there, the values used."""
    validate("Response", response)
    missing = (SPEC_REQUIRED | OPEN_REQUIRED) - set(response)
    assert not missing, f"missing {sorted(missing)}"
    assert response["status"] == status
    for field, default in DEFAULTS.items():
        assert response[field] == (sent or {}).get(field, default), (field, response[field])
    if status in ("queued", "in_progress"):
        assert response["usage"] is None  # not known yet: null, as OpenAI's snapshots say it
    if status == "completed":
        assert isinstance(response["usage"], dict)
        assert isinstance(response["completed_at"], int)
        assert response["created_at"] <= response["completed_at"] <= time.time() + 1
    else:
        assert response["completed_at"] is None, response["completed_at"]
    assert response["user"] == (sent or {}).get("user")
    for tool in response["tools"]:
        if tool["type"] == "function":
            assert tool["strict"] is (sent or {}).get("strict", False)
    return response


def stored(gw, rid: str) -> dict:
    r = httpx.get(gw.url + f"/v1/responses/{rid}", trust_env=False, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def stream_events(c, **body) -> list[dict]:
    """The SSE events as openai-python reads them off the wire, as JSON."""
    with c.responses.with_streaming_response.create(stream=True, **body) as r:
        return [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]


def snapshots(events: list[dict]) -> list[tuple[str, dict]]:
    return [(e["type"], e["response"]) for e in events if e["type"] in SNAPSHOTS]


def refused(call):
    import openai
    with pytest.raises(openai.BadRequestError) as e:
        call()
    return e.value


# ---- the Response object ---------------------------------------------------------------------------------------

def test_a_whole_answer_and_its_stored_copy_are_complete(gw, emu):
    raw = client(gw).responses.with_raw_response.create(model="gpt-4o", input="hi", tools=[WEATHER])
    whole = exact(json.loads(raw.text), "completed")
    assert raw.parse().completed_at == whole["completed_at"]  # openai-python reads it
    assert exact(stored(gw, whole["id"]), "completed") == whole


def test_every_snapshot_of_a_stream_is_complete(gw, emu):
    events = stream_events(client(gw), model="gpt-4o", input="hi", tools=[WEATHER])
    seen = snapshots(events)
    assert [t for t, _ in seen] == ["response.created", "response.in_progress", "response.completed"]
    for kind, response in seen:
        exact(response, "completed" if kind == "response.completed" else "in_progress")
    assert stored(gw, seen[-1][1]["id"]) == seen[-1][1]


def test_the_values_the_client_sent_are_echoed(gw, emu):
    sent = {"temperature": 0.3, "top_p": 0.5, "strict": True}
    tool = {**WEATHER, "strict": True, "parameters": {**WEATHER["parameters"], "required": ["city"],
                                                      "additionalProperties": False}}
    r = client(gw).responses.with_raw_response.create(model="gpt-4o", input="hi", tools=[tool], temperature=0.3,
                                                      top_p=0.5)
    exact(json.loads(r.text), "completed", sent)
    chat = emu.chat_requests()[-1]["body"]
    assert (chat["temperature"], chat["top_p"], chat["tools"][0]["function"]["strict"]) == (0.3, 0.5, True)


def test_incomplete_and_failed_snapshots_have_no_completed_at(gw, emu):
    c = client(gw)
    emu.switches(reply="cut short", finish_reason="length")
    cut = snapshots(stream_events(c, model="gpt-4o", input="x"))
    assert cut[-1][0] == "response.incomplete"
    for kind, response in cut:
        exact(response, "incomplete" if kind == "response.incomplete" else "in_progress")
    assert exact(stored(gw, cut[-1][1]["id"]), "incomplete")["incomplete_details"] == {"reason": "max_output_tokens"}
    emu.reset()
    emu.fault("midstream504")
    broken = snapshots(stream_events(c, model="gpt-4o", input="x"))
    assert broken[-1][0] == "response.failed"
    for kind, response in broken:
        exact(response, "failed" if kind == "response.failed" else "in_progress")


def test_a_background_response_is_complete_queued_and_done(gw, emu):
    c = client(gw)
    raw = c.responses.with_raw_response.create(model="gpt-4o", input="ping", background=True)
    queued = json.loads(raw.text)
    exact(queued, queued["status"])
    assert queued["status"] in ("queued", "in_progress")
    for _ in range(200):
        done = stored(gw, queued["id"])
        if done["status"] == "completed":
            break
        exact(done, done["status"])
        time.sleep(0.05)
    exact(done, "completed")


def test_websocket_snapshots_are_complete(gw, emu):
    ws = connect(gw)
    try:
        warm = turn(ws, {"model": "gpt-4o", "input": [], "generate": False, "tools": [WEATHER]})
        real = turn(ws, {"model": "gpt-4o", "input": [user("hi")], "tools": [WEATHER]})
    finally:
        ws.close()
    for events in (warm, real):
        seen = snapshots(events)
        assert [t for t, _ in seen] == ["response.created", "response.in_progress", "response.completed"]
        for kind, response in seen:
            exact(response, "completed" if kind == "response.completed" else "in_progress")


# ---- the rules -------------------------------------------------------------------------------------------------

def test_compact_without_a_model_is_refused_naming_it(gw, emu):
    c = client(gw)
    for body in ({"input": [user("first")]}, {"model": None, "input": [user("first")]}):
        e = refused(lambda b=body: c.post("/responses/compact", body=b, cast_to=object))
        assert (e.status_code, e.type, e.param, e.code) == (400, "invalid_request_error", "model",
                                                            "missing_required_parameter"), e.body
        assert e.body["message"] == "Missing required parameter: 'model'."
    assert emu.chat_requests() == []
    done = c.responses.compact(model="gpt-5.5", input=[user("first")])
    assert done.output[-1].type == "compaction"


def test_a_function_call_output_without_its_call_is_refused(gw, emu):
    c = client(gw)
    orphan = {"type": "function_call_output", "call_id": "call_nowhere", "output": "sunny"}
    e = refused(lambda: c.responses.create(model="gpt-4o", input=[user("weather?"), orphan], tools=[WEATHER]))
    assert (e.status_code, e.type, e.param, e.code) == (400, "invalid_request_error", "input", None), e.body
    assert e.body["message"] == "No tool call found for function call output with call_id call_nowhere."
    emu.switches(tool_calls="always")
    first = c.responses.create(model="gpt-4o", input="weather?", tools=[WEATHER])
    call = first.output[-1]
    e = refused(lambda: c.responses.create(model="gpt-4o", previous_response_id=first.id, tools=[WEATHER],
                                           input=[{**orphan, "call_id": call.call_id + "x"}]))
    assert e.param == "input" and call.call_id + "x." in e.body["message"]
    assert len(emu.chat_requests()) == 1  # neither reached Qwen
    emu.switches(tool_calls="asked")
    follow = c.responses.create(model="gpt-4o", previous_response_id=first.id, tools=[WEATHER],
                                input=[{**orphan, "call_id": call.call_id}])  # its call in the chain: taken
    assert follow.output_text == "Tool said: sunny"


def test_a_function_call_output_without_its_call_over_websocket(gw, emu):
    ws = connect(gw)
    try:
        orphan = {"type": "function_call_output", "call_id": "call_nowhere", "output": "sunny"}
        (event,) = turn(ws, {"model": "gpt-4o", "input": [user("weather?"), orphan]})
        assert (event["type"], event["status"], event["param"], event["error"]["type"]) == (
            "error", 400, "input", "invalid_request_error"), event
        assert event["message"] == "No tool call found for function call output with call_id call_nowhere."
        assert turn(ws, {"model": "gpt-4o", "input": [user("still there?")]})[-1]["type"] == "response.completed"
    finally:
        ws.close()
    assert len(emu.chat_requests()) == 1


@pytest.mark.parametrize("failure, store", [("upstream", False), ("request", False), ("upstream", True)])
def test_a_failed_continuation_over_websocket_evicts_its_previous_response(gw, emu, failure, store):
    ws = connect(gw)
    try:
        base = {"model": "gpt-4o", "store": store}
        first = turn(ws, {**base, "input": [user("one")]})[-1]["response"]["id"]
        if failure == "upstream":
            emu.fault("midstream504")
            failed = turn(ws, {**base, "previous_response_id": first, "input": [user("two")]})
            assert failed[-1]["type"] == "response.failed"
        else:
            orphan = {"type": "function_call_output", "call_id": "call_nowhere", "output": "x"}
            failed = turn(ws, {**base, "previous_response_id": first, "input": [orphan]})
            assert failed[-1]["type"] == "error"
        again = turn(ws, {**base, "previous_response_id": first, "input": [user("two")]})
        assert (again[-1]["type"], again[-1]["status"], again[-1]["error"]["code"]) == (
            "error", 400, "previous_response_not_found"), again[-1]
        assert again[-1]["param"] == "previous_response_id"
        fresh = turn(ws, {**base, "input": [user("one"), user("two")]})  # the client starts over: served
        assert fresh[-1]["type"] == "response.completed"
    finally:
        ws.close()
    if store:  # evicted from the connection, not from the store: over HTTP it still continues
        follow = client(gw).responses.create(model="gpt-4o", previous_response_id=first, input="two")
        assert follow.status == "completed"


def test_a_continuation_that_succeeds_keeps_its_previous_response(gw, emu):
    ws = connect(gw)
    try:
        first = turn(ws, {"model": "gpt-4o", "store": False, "input": [user("one")]})[-1]["response"]["id"]
        for text in ("two", "two again"):  # a branch from the same response, twice
            done = turn(ws, {"model": "gpt-4o", "store": False, "previous_response_id": first,
                             "input": [user(text)]})
            assert done[-1]["type"] == "response.completed", done[-1]
    finally:
        ws.close()


# ---- the WebSocket ---------------------------------------------------------------------------------------------

def connect(gw) -> websocket.WebSocket:
    return websocket.create_connection(gw.url.replace("http://", "ws://") + "/v1/responses", timeout=15)


def turn(ws: websocket.WebSocket, body: dict) -> list[dict]:
    ws.send(json.dumps({"type": "response.create", **body}))
    events: list[dict] = []
    while not events or events[-1]["type"] not in ("response.completed", "response.failed", "response.incomplete",
                                                   "error"):
        events.append(json.loads(ws.recv()))
    return events
