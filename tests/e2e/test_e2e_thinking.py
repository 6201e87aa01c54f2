"""Thinking only when asked (issue 39, item 5), end to end: openai-python (chat, Responses) and the anthropic SDK
-> a real mitmdump -> the emulator, which thinks per model as DashScope does (scripts/emulator/thinking.py).

A request without any reasoning parameter gets no reasoning, and pays none, on a model that thinks by default;
each reasoning ask reaches Qwen in the model's own field (`enable_thinking` + `thinking_budget`, or
`reasoning_effort`); a thinking-only model is never sent a field it refuses, and its reasoning is billed in the
client's usage. What reached Qwen is read from the emulator's request log.
"""

from __future__ import annotations


import pytest

from helpers.home import Home
from helpers.procs import Gateway
from helpers.team import ANTHROPIC_PYTHON, NO_ANTHROPIC, anthropic_run

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "hi"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a place",
                                           "parameters": {"type": "object", "properties": {"location":
                                                          {"type": "string"}}, "required": ["location"]}}}]
needs_anthropic = pytest.mark.skipif(not ANTHROPIC_PYTHON.exists(), reason=NO_ANTHROPIC)


def _gateway(emulator, home, args: tuple[str, ...] = ()) -> Gateway:
    """A gateway whose only account is a key on the emulator, its default model one that thinks by default."""
    gateway_home = Home(home, emulator)
    gateway_home.key("ds", default_model="qwen3.6-plus")
    return Gateway(home / "gw", args=args, env=gateway_home.env()).start()


@pytest.fixture(scope="module")
def tgw(emulator, tmp_path_factory):
    gw = _gateway(emulator, tmp_path_factory.mktemp("thinking"))
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def pgw(emulator, tmp_path_factory):
    """The same, passing Messages requests through to the account's Anthropic-compatible base."""
    gw = _gateway(emulator, tmp_path_factory.mktemp("thinking-pass"), ("--set", "qwen_messages_passthrough=true"))
    yield gw
    gw.stop()


def client(gw: Gateway):
    import openai
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=30)


def sent(emu) -> dict:
    """The last model request Qwen (the emulator) received: chat, or Messages on the Anthropic base."""
    return [r for r in emu.requests() if r["path"].split("?")[0].endswith(("/chat/completions", "/messages"))][-1][
        "body"]


def knobs(body: dict) -> dict:
    return {k: body[k] for k in ("enable_thinking", "thinking_budget", "reasoning_effort", "thinking") if k in body}


def reasoning(message) -> str | None:
    return (message.model_extra or {}).get("reasoning_content")


def reasoning_tokens(usage) -> int:
    details = usage.completion_tokens_details
    return details.reasoning_tokens or 0 if details is not None else 0


def messages(gw: Gateway, *calls: dict) -> list[dict]:
    """Each call's answer through the anthropic SDK (a `create` or a `stream`)."""
    out = anthropic_run(gw.url, "sk-ant-client", list(calls))["result"]
    assert all("answer" in o for o in out), out
    return [o["answer"].get("message", o["answer"]) for o in out]


def blocks(message: dict) -> list[str]:
    return [b["type"] for b in message["content"]]


# ---- no reasoning parameter: no reasoning, none paid ----------------------------------------------------------


def test_chat_gpt4o_without_reasoning_gets_none_and_pays_none(tgw, emu):
    c = client(tgw).chat.completions.create(model="gpt-4o", messages=USER)
    assert sent(emu)["model"] == "qwen3.6-plus" and knobs(sent(emu)) == {"enable_thinking": False}
    assert c.choices[0].message.content == "Echo: hi" and reasoning(c.choices[0].message) is None
    assert reasoning_tokens(c.usage) == 0
    chunks = list(client(tgw).chat.completions.create(model="gpt-4o", messages=USER, stream=True,
                                                      stream_options={"include_usage": True}))
    assert knobs(sent(emu)) == {"enable_thinking": False}
    assert not any(reasoning(ch.choices[0].delta) for ch in chunks if ch.choices)
    assert chunks[-1].usage is not None and reasoning_tokens(chunks[-1].usage) == 0


def test_responses_gpt4o_without_reasoning_gets_none_and_pays_none(tgw, emu):
    r = client(tgw).responses.create(model="gpt-4o", input="hi")
    assert knobs(sent(emu)) == {"enable_thinking": False}
    assert [o.type for o in r.output] == ["message"] and r.output_text == "Echo: hi"
    assert r.usage.output_tokens_details.reasoning_tokens == 0
    with client(tgw).responses.stream(model="gpt-4o", input="hi") as s:
        final = s.get_final_response()
    assert [o.type for o in final.output] == ["message"] and final.usage.output_tokens_details.reasoning_tokens == 0


def test_an_effort_native_model_without_reasoning_is_told_none(tgw, emu):
    c = client(tgw).chat.completions.create(model="qwen3.8-max", messages=USER)
    assert knobs(sent(emu)) == {"reasoning_effort": "none"}  # its own switch, never enable_thinking
    assert reasoning(c.choices[0].message) is None and reasoning_tokens(c.usage) == 0


def test_a_model_that_thinks_only_when_told_is_told_nothing(tgw, emu):
    client(tgw).chat.completions.create(model="qwen-plus", messages=USER)
    assert knobs(sent(emu)) == {}
    client(tgw).chat.completions.create(model="qwen3-coder-plus", messages=USER, reasoning_effort="high")
    assert knobs(sent(emu)) == {}  # no thinking at all: no knob is sent


@needs_anthropic
def test_messages_without_thinking_get_none_and_pay_none(tgw, pgw, emu):
    ask = {"model": "claude-sonnet-4-6", "max_tokens": 256, "messages": USER}
    whole, streamed = messages(tgw, {"op": "create", "params": ask}, {"op": "stream", "params": ask})
    assert knobs(sent(emu)) == {"enable_thinking": False}
    assert blocks(whole) == blocks(streamed) == ["text"]
    assert whole["usage"]["output_tokens"] == streamed["usage"]["output_tokens"] == 3  # "Echo: hi", no thinking
    whole, = messages(pgw, {"op": "create", "params": ask})  # the plan's own Anthropic base
    assert sent(emu)["model"] == "qwen3.6-plus" and knobs(sent(emu)) == {"thinking": {"type": "disabled"}}
    assert blocks(whole) == ["text"]


# ---- each ask in the model's own field -----------------------------------------------------------------------------


@pytest.mark.parametrize("model,effort,want", [
    ("qwen3.6-plus", "low", {"enable_thinking": True, "thinking_budget": 1024}),
    ("qwen3.6-plus", "high", {"enable_thinking": True}),
    ("qwen3.6-plus", "none", {"enable_thinking": False}),
    ("qwen3.5-27b", "high", {"enable_thinking": True, "thinking_budget": 81920}),  # a budget required: its most
    ("qwen3.8-max", "low", {"reasoning_effort": "low"}),
    ("qwen3.8-max", "xhigh", {"reasoning_effort": "xhigh"}),
    ("qwen3.8-max", "minimal", {"reasoning_effort": "none"}),
])
def test_chat_reasoning_effort_reaches_qwen_in_the_models_field(tgw, emu, model, effort, want):
    c = client(tgw).chat.completions.create(model=model, messages=USER, reasoning_effort=effort)
    assert knobs(sent(emu)) == want
    thinks = effort not in ("none", "minimal")
    assert bool(reasoning(c.choices[0].message)) is thinks and (reasoning_tokens(c.usage) > 0) is thinks


def test_a_budget_above_the_models_most_is_lowered_to_it(tgw, emu):
    c = client(tgw).chat.completions.create(model="qwen3.6-plus", messages=USER, extra_body={
        "enable_thinking": True, "thinking_budget": 200_000})
    assert knobs(sent(emu)) == {"enable_thinking": True, "thinking_budget": 81920}
    assert reasoning(c.choices[0].message)


def test_responses_reasoning_reaches_qwen_with_its_summary(tgw, emu):
    r = client(tgw).responses.create(model="gpt-4o", input="hi", reasoning={"effort": "medium", "summary": "auto"})
    assert knobs(sent(emu)) == {"enable_thinking": True, "thinking_budget": 8192}
    item = r.output[0]
    assert item.type == "reasoning" and item.summary and item.summary[0].text
    assert r.usage.output_tokens_details.reasoning_tokens > 0
    r = client(tgw).responses.create(model="qwen3.8-max", input="hi", reasoning={"effort": "max"})
    assert knobs(sent(emu)) == {"reasoning_effort": "xhigh"}  # its highest
    assert r.output[0].type == "reasoning" and r.usage.output_tokens_details.reasoning_tokens > 0


@needs_anthropic
def test_messages_thinking_reaches_qwen_as_its_budget(tgw, emu):
    think = {"type": "enabled", "budget_tokens": 90_000}  # above qwen3.6-plus's most (81,920) and its cap
    ask = {"model": "claude-sonnet-4-6", "max_tokens": 100_000, "messages": USER, "thinking": think}
    whole, streamed = messages(tgw, {"op": "create", "params": ask}, {"op": "stream", "params": ask})
    # the cap Qwen names (65,536) is learned, and the budget kept below it (Qwen refuses one at or above it)
    assert knobs(sent(emu)) == {"enable_thinking": True, "thinking_budget": 65535}
    assert blocks(whole) == blocks(streamed) == ["thinking", "text"]
    off, = messages(tgw, {"op": "create", "params": {**ask, "thinking": {"type": "disabled"}}})
    assert knobs(sent(emu)) == {"enable_thinking": False} and blocks(off) == ["text"]
    effort, = messages(tgw, {"op": "create", "params": {**ask, "model": "qwen3.8-max", "thinking": {
        "type": "enabled", "budget_tokens": 2048}}})
    assert knobs(sent(emu)) == {"thinking_budget": 2048} and blocks(effort) == ["thinking", "text"]


# ---- thinking-only models: never a field they refuse; their reasoning billed ---------------------------------------


def test_a_thinking_only_model_is_never_told_to_stop(tgw, emu):
    c = client(tgw).chat.completions.create(model="qwen3-235b-a22b-thinking-2507", messages=USER,
                                            reasoning_effort="none")
    assert knobs(sent(emu)) == {} and c.choices[0].message.content == "Echo: hi"
    assert reasoning_tokens(c.usage) > 0  # it thought anyway: billed, and said so
    c = client(tgw).chat.completions.create(model="qwen3-235b-a22b-thinking-2507", messages=USER)
    assert knobs(sent(emu)) == {} and reasoning_tokens(c.usage) > 0
    r = client(tgw).responses.create(model="qwen3-235b-a22b-thinking-2507", input="hi", reasoning={"effort": "none"})
    assert knobs(sent(emu)) == {} and r.output_text == "Echo: hi"
    assert r.usage.output_tokens_details.reasoning_tokens > 0


@needs_anthropic
def test_messages_to_a_thinking_only_model_hide_the_thinking_but_bill_it(tgw, pgw, emu):
    ask = {"model": "qwen3-235b-a22b-thinking-2507", "max_tokens": 256, "messages": USER}
    plain, off = messages(tgw, {"op": "create", "params": ask},
                          {"op": "create", "params": {**ask, "thinking": {"type": "disabled"}}})
    assert knobs(sent(emu)) == {}
    assert blocks(plain) == blocks(off) == ["text"]  # not asked for: not shown
    assert plain["usage"]["output_tokens"] > 3  # "Echo: hi" and the thinking Qwen billed
    passed, streamed = messages(pgw, {"op": "create", "params": {**ask, "thinking": {"type": "disabled"}}},
                                {"op": "stream", "params": ask})  # the plan's own Anthropic base
    assert knobs(sent(emu)) == {}
    assert blocks(passed) == blocks(streamed) == ["text"] and passed["usage"]["output_tokens"] > 3


def test_json_and_forced_tools_still_turn_a_default_thinker_off(tgw, emu):
    client(tgw).chat.completions.create(model="gpt-4o", messages=USER, response_format={"type": "json_object"})
    assert knobs(sent(emu)) == {"enable_thinking": False}
    client(tgw).chat.completions.create(model="qwen3.8-max", messages=USER, tools=TOOLS, tool_choice="required",
                                        reasoning_effort="high")
    assert knobs(sent(emu)) == {"reasoning_effort": "none"} and sent(emu)["tool_choice"] == "required"
