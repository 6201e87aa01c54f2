"""Qwen on the team's own servers as 2026 vLLM and SGLang serve it (issue 78): the emulator's `--vllm-version 0.20.0`
and `--serve sglang` modes with the Qwen3.6 chat template (`--chat-template qwen3.6`: a system message anywhere but
first is a 400, no `developer` role, tool calls as XML parsed by `qwen3_coder`), through a real mitmdump, driven by
real Codex (the Responses API: its `instructions` plus a `developer` item), the openai and anthropic SDKs — a first
turn and a tool turn each."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest

from helpers.home import Home
from helpers.procs import Gateway, start_emulator, until
from helpers.team import ANTHROPIC_PYTHON, NO_ANTHROPIC, anthropic_calls
from e2e.test_e2e_codex import Codex, assert_clean, custom_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

KEY = "sk-team-gpu"
QWEN36 = "Qwen/Qwen3.6-27B"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The weather at a place",
                                            "parameters": {"type": "object", "properties": {
                                                "location": {"type": "string"}}, "required": ["location"]}}}
SERVER = ("--api-key", KEY, "--reasoning-parser", "qwen3", "--chat-template", "qwen3.6", "--enable-auto-tool-choice",
          "--tool-call-parser", "qwen3_coder", "--max-model-len", "262144")


@pytest.fixture(scope="module")
def vllm(tmp_path_factory):
    emu = start_emulator(tmp_path_factory.mktemp("vllm-2026"), "--serve", "vllm", "--vllm-version", "0.20.0",
                         "--model", QWEN36, *SERVER)
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def team_named(tmp_path_factory):
    """A Qwen3.6 served under a name of the team's own: its template's rule is learned from its refusal."""
    emu = start_emulator(tmp_path_factory.mktemp("vllm-named"), "--serve", "vllm", "--vllm-version", "0.20.0",
                         "--model", QWEN36, "--served-model-name", "team-model", *SERVER)
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def sglang(tmp_path_factory):
    emu = start_emulator(tmp_path_factory.mktemp("sglang"), "--serve", "sglang", "--model-path", QWEN36,
                         "--api-key", KEY, "--reasoning-parser", "qwen3", "--chat-template", "qwen3.6",
                         "--tool-call-parser", "qwen3_coder")
    yield emu
    emu.stop()


def gateway(tmp_path: Path, server, make_gateway, name: str = "gw") -> tuple[Gateway, Path]:
    server.reset()
    home = Home(tmp_path, state=tmp_path / f"state-{name}")
    home.selfhosted("gpu", server.url + "/v1", secret=KEY)
    gw = make_gateway(name, env=home.env(), args=("--set", "qwen_debug_log=true"))
    state = home.state
    until(lambda: "token window)" in gw.log(), "the server's list read at start")
    return gw, state


def sent(server) -> list[dict]:
    return [r["body"] for r in server.requests() if r["path"].endswith("/chat/completions")]


def records(state: Path, count: int = 1) -> list[dict]:
    """The debug log's records, once there are `count` (each is written by a thread after its exchange ended)."""
    def read() -> list[dict]:
        found = [json.loads(p.read_text()) for p in sorted((state / "logs").glob("exchange-*.json"))]
        return found if len(found) >= count else []
    return until(read, f"{count} debug log record(s)")


def client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=60,
                         http_client=httpx.Client(trust_env=False))


def roles(body: dict) -> list[str]:
    return [m["role"] for m in body["messages"]]


def test_codex_on_a_qwen36_template_a_first_turn_and_a_tool_turn(tmp_path, vllm, make_gateway):
    gw, _ = gateway(tmp_path, vllm, make_gateway)
    vllm.switches(tool_calls="always", tool_arguments={"cmd": "echo pong-from-tool"})
    log, _ = Codex(tmp_path, "qwen36", custom_config(gw, "gpt-5-codex"), QWENPROXY_API_KEY="client-key").run(
        "say pong")
    assert_clean(log)
    assert "pong-from-tool" in log and "Tool said:" in log  # Codex ran the XML-parsed call, then answered
    first, second = sent(vllm)[:2]
    for body in (first, second):
        assert roles(body)[0] == "system" and roles(body).count("system") == 1, roles(body)
        assert "developer" not in roles(body) and body["model"] == QWEN36
    assert "Codex" in first["messages"][0]["content"]  # its instructions, first
    assert second["messages"][-1]["role"] == "tool"
    assert first["chat_template_kwargs"]["preserve_thinking"] is True  # an agent on a model whose card asks it


def test_a_template_rule_the_name_does_not_tell_is_learned_from_the_servers_refusal(tmp_path, team_named,
                                                                                    make_gateway):
    gw, state = gateway(tmp_path, team_named, make_gateway)
    answer = client(gw).responses.create(model="gpt-5-codex", instructions="You are Codex.", input=[
        {"role": "developer", "content": "Sandbox: read-only."}, {"role": "user", "content": "say hello"}],
        reasoning={"effort": "none"})
    assert answer.status == "completed" and answer.output_text == "Echo: say hello"
    refused, again = sent(team_named)
    assert roles(refused) == ["system", "system", "user"] and roles(again) == ["system", "user"]
    assert again["messages"][0]["content"] == "You are Codex.\n\nSandbox: read-only."
    summary = records(state)[-1]["summary"]
    assert summary["retry_reasons"] == ["template"] and summary["status"] == 200
    again_answer = client(gw).responses.create(model="gpt-5-codex", instructions="You are Codex.", input=[
        {"role": "developer", "content": "x"}, {"role": "user", "content": "say hello"}], reasoning={"effort": "none"})
    assert again_answer.status == "completed" and roles(sent(team_named)[-1]) == ["system", "user"]  # learned


@pytest.mark.parametrize("server", ["vllm", "sglang"])
def test_the_openai_sdk_a_first_turn_and_a_tool_turn(tmp_path, make_gateway, server, request):
    emu = request.getfixturevalue(server)
    gw, _ = gateway(tmp_path, emu, make_gateway, server)
    c = client(gw)
    ask = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "use get_weather for Paris"}]
    first = c.chat.completions.create(model="gpt-4o", messages=ask, tools=[WEATHER])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris"}
    assert (first.choices[0].message.model_extra or {}).get("reasoning_content")  # `reasoning` or not, one name
    then = c.chat.completions.create(model="gpt-4o", tools=[WEATHER], stream=True, messages=[
        *ask, first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"}])
    text = "".join(ch.choices[0].delta.content or "" for ch in then if ch.choices)
    assert text.startswith("Tool said:"), text


@pytest.mark.skipif(not ANTHROPIC_PYTHON.exists(), reason=NO_ANTHROPIC)
@pytest.mark.parametrize("server", ["vllm", "sglang"])
def test_the_anthropic_sdk_a_first_turn_and_a_tool_turn(tmp_path, make_gateway, server, request):
    emu = request.getfixturevalue(server)
    gw, _ = gateway(tmp_path, emu, make_gateway, server)
    tool = {"name": "get_weather", "description": "The weather at a place", "input_schema": WEATHER["function"][
        "parameters"]}
    ask = {"role": "user", "content": "use get_weather for Paris"}
    (first,) = anthropic_calls(gw.url, "client-key", [
        {"op": "create", "params": {"model": "claude-sonnet-4-6", "max_tokens": 64000, "tools": [tool],
                                    "thinking": {"type": "enabled", "budget_tokens": 2000}, "messages": [ask]}}])
    assert "answer" in first, first
    blocks = first["answer"]["content"]
    assert [b["type"] for b in blocks][0] == "thinking" and blocks[-1]["type"] == "tool_use"
    assert blocks[-1]["input"] == {"location": "Paris"} and first["answer"]["stop_reason"] == "tool_use"
    (then,) = anthropic_calls(gw.url, "client-key", [
        {"op": "stream", "params": {"model": "claude-sonnet-4-6", "max_tokens": 64000, "tools": [tool], "messages": [
            ask, {"role": "assistant", "content": blocks},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": blocks[-1]["id"],
                                          "content": "sunny"}]}]}}])
    assert "answer" in then and then["answer"]["text"].startswith("Tool said:"), then
    budgeted = sent(emu)[0]
    if server == "vllm":
        assert budgeted["thinking_token_budget"] == 2000
    else:
        assert budgeted["chat_template_kwargs"]["thinking_budget"] == 2000


@pytest.mark.skipif(not ANTHROPIC_PYTHON.exists(), reason=NO_ANTHROPIC)
def test_an_aborted_answer_is_a_break_in_every_dialect(tmp_path, vllm, make_gateway):
    """vLLM's engine ends a request it aborted with `finish_reason: "abort"` after part of the text: never a clean end.
    With thinking on (a self-hosted thinking turn is not continued), each dialect's terminal error; with it off, the
    answer continued from what the client has. The client never reads a finish its API does not know."""
    gw, state = gateway(tmp_path, vllm, make_gateway)
    c = client(gw)
    vllm.fault("finish_abort")
    with pytest.raises(openai.APIError):
        for chunk in c.chat.completions.create(model="gpt-4o", stream=True, messages=[
                {"role": "user", "content": "say hello to everyone in the room"}]):
            assert not chunk.choices or chunk.choices[0].finish_reason in (None, "stop", "length", "tool_calls")
    vllm.fault("finish_abort")
    try:
        kinds = [e.type for e in c.responses.create(model="gpt-4o", input="say hello to everyone in the room",
                                                    stream=True)]
    except openai.APIError:
        kinds = ["raised"]
    assert "response.completed" not in kinds and kinds[-1] in ("response.failed", "error", "raised"), kinds
    vllm.fault("finish_abort")
    (streamed,) = anthropic_calls(gw.url, "client-key", [
        {"op": "stream", "params": {"model": "claude-sonnet-4-6", "max_tokens": 4000,
                                    "messages": [{"role": "user", "content": "say hello to everyone in the room"}]}}])
    if "answer" in streamed:  # Claude's thinking off by default: the break continued from what the client had
        assert streamed["answer"]["text"] == "Echo: say hello to everyone in the room", streamed
        assert any("continued" in (r["summary"].get("retry_reasons") or []) for r in records(state, 3))
    cut = [r["summary"] for r in records(state, 3) if r["summary"].get("stream_error") or r["summary"].get("cuts")]
    assert len(cut) >= 2, [r["summary"] for r in records(state, 3)]  # a break each time, on the flow and the ledger
