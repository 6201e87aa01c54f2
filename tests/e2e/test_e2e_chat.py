"""End to end: the openai SDK -> a real mitmdump running addons/qwen.py -> the Qwen emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import httpx
import pytest

from helpers.procs import Gateway
from helpers.openai_schema import validate

if TYPE_CHECKING:
    import openai  # annotations only; the functions import it when they run

pytestmark = pytest.mark.e2e

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a place",
                                           "parameters": {"type": "object", "properties": {"location":
                                                          {"type": "string"}}, "required": ["location"]}}}]


def client(gw: Gateway, **kw) -> openai.OpenAI:
    import openai
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-client-key-must-not-leak", max_retries=0,
                         timeout=30, **kw)


def raw_stream(gw: Gateway, body: dict) -> list[dict]:
    """The SSE events exactly as the client receives them, parsed."""
    events = []
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, timeout=30, trust_env=False) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_non_stream_chat(gw, emu, oauth_home):
    r = client(gw).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "ping"}])
    validate("CreateChatCompletionResponse", json.loads(r.text))
    c = r.parse()
    assert c.choices[0].message.content == "Echo: ping"
    assert c.model == "gpt-4o"
    assert c.usage.total_tokens > 0
    (sent,) = emu.chat_requests()
    assert sent["headers"]["authorization"] == f"Bearer {oauth_home['token']}"
    assert sent["headers"]["x-dashscope-authtype"] == "qwen-oauth"
    assert sent["headers"]["user-agent"].startswith("QwenCode/")
    assert sent["headers"]["x-stainless-lang"] == "js"
    assert "sk-client-key-must-not-leak" not in json.dumps(sent)
    assert sent["body"]["model"] == "coder-model"


def test_streamed_chat_event_by_event(gw, emu):
    chunks = list(client(gw).chat.completions.create(
        model="gpt-4.1", messages=[{"role": "user", "content": "stream me please"}], stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: stream me please"
    assert all(c.model == "gpt-4.1" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)
    (sent,) = emu.chat_requests()
    assert sent["body"]["stream_options"] == {"include_usage": True}  # asked upstream all the same


def test_stream_chunks_validate_and_usage_only_when_asked(gw, emu):
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}], "stream": True,
            "reasoning_effort": "high"}
    plain = raw_stream(gw, body)
    for ev in plain:
        validate("CreateChatCompletionStreamResponse", ev)
    assert not any(ev["choices"] == [] for ev in plain)
    assert any("reasoning_content" in ev["choices"][0]["delta"] for ev in plain)  # kept as an extra field
    with_usage = raw_stream(gw, {**body, "stream_options": {"include_usage": True}})
    for ev in with_usage:
        validate("CreateChatCompletionStreamResponse", ev)
    assert with_usage[-1]["choices"] == [] and with_usage[-1]["usage"]["total_tokens"] > 0


def test_streamed_tool_call(gw, emu):
    emu.switches(tool_calls="always")
    stream = client(gw).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "weather in Paris?"}], tools=TOOLS, stream=True)
    calls: dict[int, dict] = {}
    finish = None
    for c in stream:
        for ch in c.choices:
            finish = ch.finish_reason or finish
            for tc in ch.delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"id": tc.id, "name": "", "arguments": ""})
                slot["name"] += tc.function.name or ""
                slot["arguments"] += tc.function.arguments or ""
    assert finish == "tool_calls"
    assert calls[0]["name"] == "get_weather" and json.loads(calls[0]["arguments"]) == {"location": "Paris"}
    assert calls[0]["id"]


def test_non_stream_tool_call_round_trip(gw, emu):
    emu.switches(tool_calls="always")  # a call of the offered tool, whatever the prompt (docs/emulator.md)
    c = client(gw)
    msgs = [{"role": "user", "content": "weather in Paris?"}]
    first = c.chat.completions.create(model="gpt-4o", messages=msgs, tools=TOOLS)
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    msgs += [first.choices[0].message.model_dump(exclude_none=True),
             {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}]
    second = c.chat.completions.create(model="gpt-4o", messages=msgs, tools=TOOLS)
    assert second.choices[0].message.content == "Tool said: sunny, 21C"


def test_split_writes(gw, emu):
    # Deltas are appended as they come (never guessed cumulative: see test_e2e_rules.py, R8).
    emu.switches(split_writes=True)
    chunks = list(client(gw).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "one two three four five"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: one two three four five"


@pytest.mark.parametrize("fault,exc,code", [  # exc: a name in openai (imported by the test, not at collection)
    ("context400", "BadRequestError", "context_length_exceeded"),
    ("timeout504", "InternalServerError", "upstream_timeout"),
    ("server500", "InternalServerError", None),
])
def test_upstream_errors_raise_the_matching_sdk_exception(gw, emu, fault, exc, code):
    import openai
    emu.fault(fault)
    with pytest.raises(getattr(openai, exc)) as e:
        client(gw).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    if code:
        assert e.value.code == code
    # and the gateway keeps serving
    assert client(gw).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "y"}])


def test_midstream_failure_ends_with_an_error_event(gw, emu):
    import openai
    emu.fault("midstream504")
    with pytest.raises(openai.APIError, match="stream timeout"):
        for _ in client(gw).chat.completions.create(model="gpt-4o", stream=True,
                                                    messages=[{"role": "user", "content": "long answer"}]):
            pass


def test_reset_midstream_does_not_hang_the_client(gw, emu):
    import openai
    emu.fault("reset_midstream")
    with pytest.raises((openai.APIError, httpx.HTTPError)):
        for _ in client(gw).chat.completions.create(model="gpt-4o", stream=True,
                                                    messages=[{"role": "user", "content": "long answer"}]):
            pass
    assert client(gw).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "y"}])


@pytest.mark.parametrize("content,status,code", [
    (b"{broken", 400, "invalid_json"),
    (b'{"model": "gpt-4o"}', 400, "missing_required_parameter"),
])
def test_bad_client_input(gw, emu, content, status, code):
    r = httpx.post(gw.url + "/v1/chat/completions", content=content, headers={"content-type": "application/json"},
                   trust_env=False)
    assert r.status_code == status
    validate("ErrorResponse", r.json())
    assert r.json()["error"]["code"] == code
    r = httpx.post(gw.url + "/v1/no/such/thing", json={}, trust_env=False)
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"  # as OpenAI types it
    assert emu.chat_requests() == []
    assert client(gw).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "ok"}])


def test_local_models_and_health(gw, emu):
    models = client(gw).models.list()
    ids = [m.id for m in models.data]
    assert "coder-model" in ids and "gpt-4o" in ids
    validate("ListModelsResponse", httpx.get(gw.url + "/v1/models", trust_env=False).json())
    assert client(gw).models.retrieve("gpt-4o").id == "gpt-4o"
    health = httpx.get(gw.url + "/health", trust_env=False).json()
    assert health["status"] == "ok" and health["upstream"].startswith(emu.url)
    assert emu.client_requests() == []  # answered locally


SCRIPT = textwrap.dedent("""
    import openai
    c = openai.OpenAI(api_key="sk-real-openai-key", max_retries=0)
    print(c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "via proxy"}])
          .choices[0].message.content)
    print("".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
          model="gpt-4o", messages=[{"role": "user", "content": "streamed via proxy"}], stream=True) if ch.choices))
""")


def test_explicit_proxy_unchanged_client_never_reaches_openai(make_gateway, emu, oauth_home, tmp_path):
    gw = make_gateway("regular", mode="regular", env=oauth_home["env"], connlog=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(HTTPS_PROXY=gw.url, SSL_CERT_FILE=str(gw.ca_cert))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr + gw.log()
    assert out.stdout.split("\n")[:2] == ["Echo: via proxy", "Echo: streamed via proxy"]
    # mitmproxy itself connects only to the gateway's relay (the streamed answer); the engine sent both
    # requests to Qwen; nothing went anywhere else
    assert gw.connections() == ["relay"], gw.connections()
    assert len(emu.chat_requests()) == 2
    assert "sk-real-openai-key" not in json.dumps(emu.requests())


def test_explicit_proxy_leaves_other_hosts_alone(make_gateway, emu, oauth_home):
    gw = make_gateway("regular", mode="regular", env=oauth_home["env"])
    # The emulator stands in for "some other host": its admin API must pass through unchanged.
    with httpx.Client(proxy=gw.url, trust_env=False) as c:
        r = c.get(emu.url + "/_emulator/stats")
    assert r.status_code == 200 and "chat_requests" in r.json()


def test_missing_credentials_fail_closed(make_gateway, emu, tmp_path):
    import openai
    env = {"QWEN_DIR": str(tmp_path / "empty"), "QWEN_GATEWAY_HOME": str(tmp_path / "gh"), "HOME": str(tmp_path)}
    gw = make_gateway("nocreds", mode="regular", env=env, connlog=True)
    with pytest.raises(openai.APIStatusError) as e:
        openai.OpenAI(api_key="x", max_retries=0, http_client=httpx.Client(proxy=gw.url, verify=str(gw.ca_cert))
                      ).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert "qwen-auth" in e.value.message
    assert gw.connections() == []
