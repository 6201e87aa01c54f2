"""The vLLM (2026) and SGLang modes' own dialects over real HTTP (scripts/emulator/vllm_native.py): the Anthropic
Messages API (`/v1/messages`, thinking blocks with a reasoning parser, tool_use, count_tokens, streams, errors) and
vLLM's Responses API (`/v1/responses`: reasoning and message items, streams, no store unless --responses-store)."""

from __future__ import annotations

import json

import pytest

from helpers.procs import start_emulator

pytestmark = pytest.mark.e2e  # starts emulator processes

V20 = ("--serve", "vllm", "--vllm-version", "0.20.0", "--served-model-name", "qwen3-8b", "--reasoning-parser", "qwen3",
       "--enable-auto-tool-choice", "--tool-call-parser", "hermes", "--max-model-len", "4096")
TOOL = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"location": {"type": "string"}},
                                                "required": ["location"]}}


@pytest.fixture(scope="module")
def v20(tmp_path_factory):
    emu = start_emulator(tmp_path_factory.mktemp("native"), *V20)
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    emu = start_emulator(tmp_path_factory.mktemp("native-store"), *V20, "--responses-store")
    yield emu
    emu.stop()


@pytest.fixture(autouse=True)
def fresh(request):
    for name in ("v20", "stored"):
        if name in request.fixturenames:
            request.getfixturevalue(name).reset()


def sse(text: str) -> list[tuple[str, dict]]:
    out = []
    for block in text.split("\n\n"):
        if block:
            name, data = block.split("\n", 1)
            out.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def test_messages_with_thinking_tools_and_count_tokens(v20):
    body = {"model": "qwen3-8b", "max_tokens": 200, "messages": [{"role": "user", "content": "hello world"}]}
    r = v20.http.post("/v1/messages", json=body)
    got = r.json()
    assert r.status_code == 200 and got["type"] == "message" and got["stop_reason"] == "end_turn"
    assert got["content"][0] == {"type": "thinking", "thinking": "\nThinking about it.\n", "signature": ""}
    assert got["content"][1] == {"type": "text", "text": "\n\nEcho: hello world"}
    assert got["usage"]["input_tokens"] > 0 and got["usage"]["output_tokens"] > 0
    off = v20.http.post("/v1/messages", json={**body, "thinking": {"type": "disabled"}}).json()
    assert [b["type"] for b in off["content"]] == ["text"]
    call = v20.http.post("/v1/messages", json={**body, "tools": [TOOL], "messages": [
        {"role": "user", "content": "call get_weather"}]}).json()
    assert call["stop_reason"] == "tool_use" and call["content"][-1]["input"] == {"location": "Paris"}
    n = v20.http.post("/v1/messages/count_tokens", json=body).json()
    assert n == {"input_tokens": got["usage"]["input_tokens"]}
    events = sse(v20.http.post("/v1/messages", json={**body, "stream": True}).text)
    assert [e[0] for e in events][:2] == ["message_start", "ping"] and events[-1][0] == "message_stop"
    assert "".join(e[1]["delta"].get("text", "") for e in events if e[0] == "content_block_delta") == \
        "\n\nEcho: hello world"
    bad = v20.http.post("/v1/messages", json={**body, "model": "nope"})
    assert (bad.status_code, bad.json()["type"], bad.json()["error"]["type"]) == (404, "error", "not_found_error")


def test_responses_without_and_with_the_store(v20, stored):
    r = v20.http.post("/v1/responses", json={"model": "qwen3-8b", "input": "hello world"})
    got = r.json()
    assert r.status_code == 200 and got["id"].startswith("resp_") and got["status"] == "completed"
    assert [i["type"] for i in got["output"]] == ["reasoning", "message"]
    assert got["output"][0]["content"] == [{"type": "reasoning_text", "text": "\nThinking about it.\n"}]
    assert got["output"][1]["content"][0]["text"] == "\n\nEcho: hello world" and got["store"] is False
    missing = v20.http.get(f"/v1/responses/{got['id']}")
    assert missing.status_code == 404 and missing.json()["error"]["message"] == f"Response with id '{got['id']}' not found."
    follow = v20.http.post("/v1/responses", json={"model": "qwen3-8b", "input": "x", "previous_response_id": got["id"]})
    assert follow.status_code == 404
    assert v20.http.post("/v1/responses", json={"model": "qwen3-8b", "input": "x", "background": True}).status_code == 400
    first = stored.http.post("/v1/responses", json={"model": "qwen3-8b", "input": "hello world"}).json()
    assert stored.http.get(f"/v1/responses/{first['id']}").json()["id"] == first["id"]
    second = stored.http.post("/v1/responses", json={"model": "qwen3-8b", "input": "again",
                                                     "previous_response_id": first["id"]}).json()
    assert second["usage"]["input_tokens"] > first["usage"]["input_tokens"]  # the stored turn is in the prompt
    events = sse(stored.http.post("/v1/responses", json={"model": "qwen3-8b", "input": "hi", "stream": True}).text)
    assert events[0][0] == "response.created" and events[-1][0] == "response.completed"
    assert [e[1]["sequence_number"] for e in events] == list(range(len(events)))
    assert "".join(e[1]["delta"] for e in events if e[0] == "response.output_text.delta") == "\n\nEcho: hi"


def test_sglang_serves_messages_not_responses(tmp_path):
    emu = start_emulator(tmp_path, "--serve", "sglang", "--reasoning-parser", "qwen3")
    try:
        r = emu.http.post("/v1/messages", json={"model": "x", "max_tokens": 50, "thinking": {
            "type": "enabled", "budget_tokens": 2}, "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200 and r.json()["content"][0]["type"] == "thinking"
        assert emu.http.post("/v1/responses", json={"model": "x", "input": "hi"}).status_code == 404
    finally:
        emu.stop()
