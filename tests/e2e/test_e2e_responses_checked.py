"""The Responses API checked like chat (issue 37, item 5), through a real gateway and openai-python.

- A body OpenAI's spec refuses (CreateResponse; a field it does not define too) is refused 400
  `invalid_request_error` whose `param` names the field, over HTTP (whole and streamed) and over the WebSocket
  (`response.create`, the warm-up included); nothing reaches Qwen. These were answered 200, clamped or passed
  on, and some echoed into a Response openai-python's own model then refused.
- What the gateway echoes into a Response is valid against the spec's `Response` schema and parsed by
  openai-python, whole and streamed, for a body that uses every echoed field.
- An answer length below Qwen's range (dashscope-rules.md R4: `[1, N]`; the Responses spec's own minimum is 16)
  is refused by the gateway naming the client's own parameter, never with Qwen's raw
  `<400> InternalError.Algo.InvalidParameter` and `param: null`.
"""

from __future__ import annotations

import json

import pytest
import websocket
from pydantic import TypeAdapter

from helpers.openai_schema import validate, validate_stream_event
from e2e.test_e2e_chat import client

pytestmark = pytest.mark.e2e

REFUSED = [  # what the issue found answered 200, and the param OpenAI names
    ({"temperature": 7}, "temperature"), ({"top_p": 5}, "top_p"), ({"tool_choice": "bogus"}, "tool_choice"),
    ({"include": ["bogus"]}, "include[0]"), ({"store": "yes"}, "store"), ({"user": 5}, "user"),
    ({"verbosity": "low"}, "verbosity"), ({"tools": [{"type": "bogus"}]}, "tools[0].type"),
    ({"reasoning": {"effort": "ultra"}}, "reasoning.effort"), ({"text": {"format": {"type": "bogus"}}},
                                                               "text.format.type"),
    ({"metadata": {"run": 5}}, "metadata.run"), ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"input": [{"type": "message", "role": "wizard", "content": "x"}]}, "input[0].role"),
]
ECHOED = {  # every request field a Response carries back, each with a valid value that is not the default
    "instructions": "Be brief.", "temperature": 0.5, "top_p": 0.9, "max_output_tokens": 64, "top_logprobs": 0,
    "metadata": {"run": "echo"}, "user": "u-1", "safety_identifier": "s-1", "prompt_cache_key": "k-1",
    "service_tier": "flex", "truncation": "auto", "max_tool_calls": 3, "parallel_tool_calls": False,
    "store": False, "reasoning": {"effort": "minimal", "summary": "concise"},
    "text": {"format": {"type": "json_schema", "name": "answer", "strict": True, "schema": {
        "type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
        "additionalProperties": False}}, "verbosity": "low"},
    "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}},
              {"type": "custom", "name": "apply_patch", "description": "Patch files"},
              {"type": "web_search", "search_context_size": "low"}],
    "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "get_weather"}]},
}


def refused(call) -> object:
    import openai
    with pytest.raises(openai.BadRequestError) as e:
        call()
    return e.value


@pytest.mark.parametrize("fields, param", REFUSED, ids=[p for _, p in REFUSED])
def test_a_body_the_spec_refuses_is_refused_naming_the_field(gw, emu, fields, param):
    c = client(gw)
    for stream in (False, True):
        e = refused(lambda s=stream: c.responses.create(model="gpt-4o", input="hi", stream=s, extra_body=fields))
        assert (e.status_code, e.type, e.param) == (400, "invalid_request_error", param), e.body
        assert f"'{param}'" in e.body["message"] and e.body["message"].startswith(("Invalid ", "Unknown parameter"))
    assert emu.chat_requests() == []


def socket_error(gw, body: dict) -> dict:
    ws = websocket.create_connection(gw.url.replace("http://", "ws://") + "/v1/responses", timeout=15)
    try:
        ws.send(json.dumps({"type": "response.create", **body}))
        event = json.loads(ws.recv())
    finally:
        ws.close()
    return event


@pytest.mark.parametrize("generate", [True, False], ids=["turn", "warm-up"])
def test_the_websocket_checks_response_create_the_same_way(gw, emu, generate):
    for fields, param in REFUSED[:3] + REFUSED[6:8]:
        event = socket_error(gw, {"model": "gpt-4o", "input": [], "generate": generate, **fields})
        assert (event["type"], event["status"], event["param"], event["error"]["type"]) == (
            "error", 400, param, "invalid_request_error"), event
    assert emu.chat_requests() == []


def test_every_echoed_field_is_valid_against_the_spec_and_openai_python(gw, emu):
    from openai.types.responses import Response, ResponseStreamEvent
    emu.switches(reply='{"a": "b"}')
    c = client(gw)
    raw = c.responses.with_raw_response.create(model="gpt-4o", input="hi", **ECHOED)
    whole = json.loads(raw.text)
    validate("Response", whole)
    parsed = raw.parse()  # openai-python's own model
    assert (parsed.reasoning.effort, parsed.text.format.type, parsed.metadata) == ("minimal", "json_schema",
                                                                                   {"run": "echo"})
    assert parsed.output_text == '{"a": "b"}' and parsed.max_output_tokens == 64
    with c.responses.with_streaming_response.create(model="gpt-4o", input="hi", stream=True, **ECHOED) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    for event in events:  # as they came, then as openai-python reads them
        validate_stream_event(event)
        TypeAdapter(ResponseStreamEvent).validate_python(event)
    final = Response.model_validate(events[-1]["response"])
    assert events[-1]["type"] == "response.completed" and final.tool_choice.type == "allowed_tools"


@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
def test_chat_answer_length_below_qwens_range_names_the_clients_parameter(gw, emu, param):
    """Was: 400 `<400> InternalError.Algo.InvalidParameter: Range of max_tokens should be [1, 65536]`, param null."""
    c = client(gw)
    e = refused(lambda: c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}],
                                                  **{param: 0}))
    assert (e.param, e.code) == (param, "invalid_value") and "InternalError" not in e.body["message"], e.body
    assert "at least 1" in e.body["message"]
    e = refused(lambda: c.completions.create(model="gpt-3.5-turbo-instruct", prompt="x", max_tokens=0))
    assert e.param == "max_tokens" and "InternalError" not in e.body["message"]
    assert emu.chat_requests() == []
    long = c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], **{param: 10**6})
    assert long.choices[0].message.content == "Echo: x"  # above Qwen's cap: lowered to it, as documented
