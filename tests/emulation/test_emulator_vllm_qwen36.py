"""The emulator's vLLM mode with the Qwen3.6/3.8 chat template (`--chat-template qwen3.6`), over real HTTP: a system
message anywhere but first and a `developer` message refused as template errors, tool calls written as XML and parsed
only by `--tool-call-parser qwen3_coder` / `qwen3_xml` (with `hermes` they stay in the content), the thinking opened
in the prompt, and tool-call arguments that degrade to `{}` after two assistant tool turns unless the request sends
`chat_template_kwargs.preserve_thinking`."""

from __future__ import annotations

import json

import pytest

from emulation.test_emulator_vllm_2026 import events, joined, message
from helpers.procs import start_emulator

pytestmark = pytest.mark.e2e  # starts emulator processes

BASE = ("--serve", "vllm", "--vllm-version", "0.20.0", "--model", "Qwen/Qwen3.6-27B", "--served-model-name",
        "qwen3.6-27b", "--chat-template", "qwen3.6", "--reasoning-parser", "qwen3", "--enable-auto-tool-choice")
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"location": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["location", "days"]}}}]
XML = ("<tool_call>\n<function=get_weather>\n<parameter=location>\nParis\n</parameter>\n<parameter=days>\n1\n"
       "</parameter>\n</function>\n</tool_call>")


@pytest.fixture(scope="module")
def coder(tmp_path_factory):
    emu = start_emulator(tmp_path_factory.mktemp("q36"), *BASE, "--tool-call-parser", "qwen3_coder")
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def hermes(tmp_path_factory):
    emu = start_emulator(tmp_path_factory.mktemp("q36h"), *BASE, "--tool-call-parser", "hermes")
    yield emu
    emu.stop()


@pytest.fixture(autouse=True)
def fresh(request):
    for name in ("coder", "hermes"):
        if name in request.fixturenames:
            request.getfixturevalue(name).reset()


def chat(emu, messages: list, **body):
    return emu.http.post("/v1/chat/completions", json={"model": "qwen3.6-27b", "messages": messages, **body})


def refused(text: str) -> dict:
    return {"error": {"message": text, "type": "BadRequestError", "param": None, "code": 400}}


def test_the_template_refuses_a_late_system_message_a_developer_and_no_user(coder):
    late = [{"role": "user", "content": "hi"}, {"role": "system", "content": "be brief"}]
    r = chat(coder, late)
    assert (r.status_code, r.json()) == (400, refused("System message must be at the beginning."))
    two = [{"role": "system", "content": "a"}, {"role": "system", "content": "b"}, {"role": "user", "content": "hi"}]
    assert chat(coder, two).json() == refused("System message must be at the beginning.")
    assert chat(coder, [{"role": "developer", "content": "x"}, {"role": "user", "content": "hi"}]).json() == \
        refused("Unexpected message role.")
    assert chat(coder, [{"role": "system", "content": "x"}]).json() == refused("No user query found in messages.")
    ok = chat(coder, [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    got = message(ok)
    assert (got["reasoning"], got["content"]) == ("Thinking about it.\n", "\n\nEcho: hi")  # <think> in the prompt


def test_tool_calls_are_xml_parsed_by_qwen3_coder_only(coder, hermes):
    ask = [{"role": "user", "content": "call get_weather"}]
    r = chat(coder, ask, tools=TOOLS)
    got = message(r)
    assert r.json()["choices"][0]["finish_reason"] == "tool_calls"
    assert [c["function"] for c in got["tool_calls"]] == [{"name": "get_weather",
                                                           "arguments": '{"location": "Paris", "days": 1}'}]
    assert got["tool_calls"][0]["id"].startswith("chatcmpl-tool-")
    evs = events(chat(coder, ask, tools=TOOLS, stream=True))
    calls = [d for e in evs if isinstance(e, dict) and e["choices"] for d in e["choices"][0]["delta"].get(
        "tool_calls") or ()]
    assert calls[0]["function"]["name"] == "get_weather"
    assert json.loads("".join(c["function"].get("arguments") or "" for c in calls)) == {"location": "Paris",
                                                                                         "days": 1}
    assert evs[-2]["choices"][0]["finish_reason"] == "tool_calls" and XML not in joined(evs, "content")
    rough = chat(hermes, ask, tools=TOOLS)  # hermes reads JSON calls: the XML stays in the text
    got = message(rough)
    assert got["tool_calls"] == [] and got["content"].endswith(XML)
    assert rough.json()["choices"][0]["finish_reason"] == "stop"


def test_without_preserve_thinking_arguments_degrade_after_two_tool_turns(coder):
    turn = lambda i: [  # noqa: E731
        {"role": "assistant", "content": None, "reasoning": "checking", "tool_calls": [
            {"id": f"c{i}", "type": "function", "function": {"name": "get_weather", "arguments":
                                                             '{"location": "Paris", "days": 1}'}}]},
        {"role": "tool", "tool_call_id": f"c{i}", "content": "sunny"}]
    loop = [{"role": "user", "content": "call get_weather"}, *turn(1), *turn(2),
            {"role": "user", "content": "call get_weather again"}]
    plain = message(chat(coder, loop, tools=TOOLS))
    assert plain["tool_calls"][0]["function"]["arguments"] == "{}"
    kept = message(chat(coder, loop, tools=TOOLS, chat_template_kwargs={"preserve_thinking": True}))
    assert json.loads(kept["tool_calls"][0]["function"]["arguments"]) == {"location": "Paris", "days": 1}
    one = [{"role": "user", "content": "call get_weather"}, *turn(1), {"role": "user", "content": "call get_weather"}]
    assert json.loads(message(chat(coder, one, tools=TOOLS))["tool_calls"][0]["function"]["arguments"])


def test_auto_tool_choice_needs_the_flags_and_the_engine_admin(tmp_path):
    emu = start_emulator(tmp_path, "--serve", "vllm", "--vllm-version", "0.20.0", "--chat-template", "qwen3.8",
                         "--token-delay", "0.01", "--max-num-seqs", "3", "--default-chat-template-kwargs",
                         '{"enable_thinking": false}')
    try:
        speed = emu.admin("GET", "speed")
        assert (speed["token_delay"], speed["max_num_seqs"], speed["dead"]) == (0.01, 3, False)
        assert emu.admin("POST", "speed", {"token_delay": 0, "max_num_seqs": 1})["max_num_seqs"] == 1
        assert emu.http.post("/_emulator/speed", json={"token_delay": -1}).status_code == 400
        plain = emu.http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        assert plain.json()["choices"][0]["message"]["content"] == "Echo: hi"  # the server's default: no thinking
        asked = emu.http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}],
                                                            "chat_template_kwargs": {"enable_thinking": True}})
        # the request wins; no reasoning parser: the text the template opened in the prompt shows in the content
        assert asked.json()["choices"][0]["message"]["content"] == "Thinking about it.\n</think>\n\nEcho: hi"
        emu.reset()  # the command line's pace and batch again
        assert (emu.admin("GET", "engine")["token_delay"], emu.admin("GET", "engine")["max_num_seqs"]) == (0.01, 3)
        r = emu.http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}],
                                                        "tools": TOOLS, "tool_choice": "auto"})
        assert (r.status_code, r.json()) == (400, refused(
            "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set"))
    finally:
        emu.stop()
