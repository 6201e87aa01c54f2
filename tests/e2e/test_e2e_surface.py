"""Responses API, legacy completions and embeddings through a real gateway, with the openai SDK."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import httpx
import pytest

from helpers.home import Home
from helpers.procs import write_creds
from helpers.openai_schema import validate, validate_stream_event

if TYPE_CHECKING:
    import openai  # annotations only; the functions import it when they run

pytestmark = pytest.mark.e2e

FN_TOOL = {"type": "function", "name": "get_weather", "description": "Weather for a place",
           "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                          "required": ["location"]}}


def client(gw) -> openai.OpenAI:
    import openai
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=30)


def sse_events(gw, path: str, body: dict) -> list[dict]:
    out = []
    with httpx.stream("POST", gw.url + path, json=body, timeout=30, trust_env=False) as r:
        assert r.status_code == 200, r.read()
        event = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and line[6:] != "[DONE]":
                data = json.loads(line[6:])
                if event is not None:
                    assert data["type"] == event
                out.append(data)
                event = None
    return out


def test_responses_non_stream_parses_and_validates(gw, emu):
    r = client(gw).responses.with_raw_response.create(model="gpt-4o", input="hello responses",
                                                      instructions="Be brief.")
    validate("Response", json.loads(r.text))
    resp = r.parse()
    assert resp.output_text == "Echo: hello responses" and resp.model == "gpt-4o" and resp.status == "completed"
    assert resp.usage.input_tokens > 0 and [o.type for o in resp.output] == ["message"]  # no reasoning asked
    sent = emu.chat_requests()[0]["body"]
    assert sent["messages"][0]["role"] == "system" and sent["model"] == "coder-model"


def test_responses_stream_text_in_strict_order(gw, emu):
    with client(gw).responses.stream(model="gpt-4o", input="stream this") as stream:
        kinds = [ev.type for ev in stream]
        final = stream.get_final_response()
    assert final.output_text == "Echo: stream this"
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert kinds.index("response.output_item.added") < kinds.index("response.output_text.delta")
    raw = sse_events(gw, "/v1/responses", {"model": "gpt-4o", "input": "validate me", "stream": True})
    assert [e["sequence_number"] for e in raw] == list(range(len(raw)))
    for ev in raw:
        validate_stream_event(ev)


def test_responses_stream_function_call_round_trip(gw, emu):
    emu.switches(tool_calls="always")  # a call of the offered tool, whatever the prompt (docs/emulator.md)
    c = client(gw)
    with c.responses.stream(model="gpt-4o", input="weather in Paris?", tools=[FN_TOOL]) as stream:
        for _ in stream:
            pass
        first = stream.get_final_response()
    call = next(o for o in first.output if o.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == {"location": "Paris"}
    second = c.responses.create(model="gpt-4o", previous_response_id=first.id, tools=[FN_TOOL],
                                input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert second.output_text == "Tool said: sunny"
    history = emu.chat_requests()[-1]["body"]["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "tool"]
    raw = sse_events(gw, "/v1/responses", {"model": "gpt-4o", "input": "weather?", "tools": [FN_TOOL],
                                           "stream": True})
    for ev in raw:
        validate_stream_event(ev)


def test_stored_responses_and_unknown_previous_id(gw, emu):
    import openai
    c = client(gw)
    r = c.responses.create(model="gpt-4o", input="remember me")
    assert c.responses.retrieve(r.id).output_text == "Echo: remember me"
    with pytest.raises(openai.BadRequestError) as e:
        c.responses.create(model="gpt-4o", input="x", previous_response_id="resp_nope")
    assert e.value.code == "previous_response_not_found"
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve("resp_nope")
    unstored = c.responses.create(model="gpt-4o", input="forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(unstored.id)


def test_codex_style_request_drops_unsupported_tools(gw, emu):
    body = {"model": "gpt-5-codex", "stream": True, "store": False, "include": ["reasoning.encrypted_content"],
            "reasoning": {"summary": "auto"}, "parallel_tool_calls": True, "tool_choice": "auto",
            "tools": [FN_TOOL, {"type": "web_search"},
                      {"type": "namespace", "name": "multi_agent_v1", "description": "Agents",
                       "tools": [{"type": "function", "name": "spawn", "parameters": {"type": "object"}}]}],
            "input": [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "dev"}]},
                      {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]}
    events = sse_events(gw, "/v1/responses", body)
    assert events[-1]["type"] == "response.completed"
    sent = emu.chat_requests()[0]["body"]
    assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather", "multi_agent_v1__spawn"]  # no search


def test_responses_midstream_failure_is_response_failed(gw, emu):
    emu.fault("midstream504")
    events = sse_events(gw, "/v1/responses", {"model": "gpt-4o", "input": "long one", "stream": True})
    assert events[-1]["type"] == "response.failed" and "stream timeout" in events[-1]["response"]["error"]["message"]
    for ev in events:
        validate_stream_event(ev)


def test_legacy_completions(gw, emu):
    import openai
    c = client(gw)
    r = c.completions.with_raw_response.create(model="gpt-3.5-turbo-instruct", prompt="complete me")
    validate("CreateCompletionResponse", json.loads(r.text))
    assert r.parse().choices[0].text == "Echo: complete me"
    text = "".join(ch.choices[0].text for ch in c.completions.create(model="gpt-3.5-turbo-instruct",
                                                                     prompt="and me", stream=True) if ch.choices)
    assert text == "Echo: and me"
    with pytest.raises(openai.BadRequestError) as e:
        c.completions.create(model="x", prompt="p", echo=True)
    assert e.value.param == "echo"


def test_embeddings_need_an_account_that_serves_them(gw, emu):
    import openai
    with pytest.raises(openai.BadRequestError) as e:
        client(gw).embeddings.create(model="text-embedding-3-small", input="hi")
    assert e.value.code == "embeddings_unavailable" and "qwen-auth add-key" in e.value.message


def test_embeddings_through_a_dashscope_key(make_gateway, emu, tmp_path):
    home = Home(tmp_path, emu)
    key = home.key("ds", embeddings=True, default_model="qwen-plus")
    write_creds(home.qwen_dir, access_token=emu.seed_token(), resource_url=emu.url)
    gw = make_gateway("emb", env=home.env())
    # floats asked: OpenAI's schema describes the float form (the SDK's default base64 is in test_e2e_rules.py)
    r = client(gw).embeddings.with_raw_response.create(model="text-embedding-3-small", input=["a", "b"],
                                                       encoding_format="float")
    validate("CreateEmbeddingResponse", json.loads(r.text))
    parsed = r.parse()
    assert len(parsed.data) == 2 and parsed.model == "text-embedding-3-small"
    sent = [x for x in emu.requests() if x["path"].endswith("/embeddings")][0]
    assert sent["path"] == "/compatible-mode/v1/embeddings" and sent["body"]["model"] == "text-embedding-v4"
    assert sent["headers"]["authorization"] == f"Bearer {key}"
