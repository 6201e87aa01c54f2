"""Qwen's thinking knobs (upstream/dashscope/knobs.py; R2, R3, R9 of dashscope-rules.md), through the chat body Qwen
gets (request.chat_to_qwen) and on their own: thinking only when asked, in the model's own field."""

from __future__ import annotations

import pytest

from qwen_gateway.upstream.dashscope import knobs
from qwen_gateway.upstream.dashscope.request import chat_to_qwen

TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
USER = {"role": "user", "content": "hi"}


def qwen(body: dict, model: str = "coder-model", oauth: bool = True, **kw) -> tuple[dict, list[str]]:
    notes: list[str] = []
    return chat_to_qwen({"model": "gpt-4o", "messages": [USER], **body}, model=model, oauth=oauth, notes=notes,
                        **kw), notes


def test_json_output_turns_thinking_off_and_is_noted_only_when_thinking_was_asked():
    out, notes = qwen({"reasoning_effort": "high", "response_format": {"type": "json_object"}})
    assert out["enable_thinking"] is False and "thinking_budget" not in out and "reasoning_effort" not in out
    assert notes == ["thinking off: Qwen refuses JSON output (response_format) in thinking mode"]
    out, notes = qwen({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}})
    assert out["enable_thinking"] is False and notes == []
    out, _ = qwen({"response_format": {"type": "text"}, "reasoning_effort": "low"})
    assert out["enable_thinking"] is True and out["thinking_budget"] == 1024


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "f"}}])
def test_forced_tool_choice_turns_thinking_off_on_hybrid_models(choice):
    out, notes = qwen({"tools": TOOLS, "tool_choice": choice, "enable_thinking": True})
    assert out["tool_choice"] == choice and out["enable_thinking"] is False
    assert notes == ["thinking off: Qwen refuses a forced tool_choice in thinking mode"]
    out, _ = qwen({"tools": TOOLS, "tool_choice": "auto", "reasoning_effort": "medium"})
    assert out["enable_thinking"] is True and out["thinking_budget"] == 8192


def test_thinking_only_models_keep_thinking_and_lose_a_forced_choice():
    out, notes = qwen({"reasoning_effort": "none", "tools": TOOLS, "tool_choice": "required", "stream": True},
                      model="qwen3-next-80b-a3b-thinking")
    assert "enable_thinking" not in out and out["tool_choice"] == "auto"
    assert any("always thinks" in n for n in notes) and len(notes) == 2
    out, notes = qwen({"enable_thinking": False}, model="qwen3-235b-a22b-thinking-2507")
    assert "enable_thinking" not in out and notes


def test_effort_native_models_get_reasoning_effort_never_with_a_budget():
    out, notes = qwen({"reasoning_effort": "low", "thinking_budget": 500}, model="qwen3.8-max")
    assert out["reasoning_effort"] == "low" and "thinking_budget" not in out and "enable_thinking" not in out
    assert notes == ["thinking_budget dropped: qwen3.8-max takes reasoning_effort and refuses both"]
    out, notes = qwen({"reasoning_effort": "xhigh"}, model="qwen3.8-max")
    assert out["reasoning_effort"] == "xhigh" and notes == []
    out, notes = qwen({"reasoning_effort": "max"}, model="qwen3.8-max")
    assert out["reasoning_effort"] == "xhigh" and notes == [
        "reasoning_effort max sent as xhigh: qwen3.8-max takes none, minimal, low, medium, high, xhigh"]
    for off in ({"reasoning_effort": "minimal"}, {"reasoning_effort": "none"}, {}, {"enable_thinking": False},
                {"reasoning_effort": "high", "response_format": {"type": "json_object"}}):
        out, _ = qwen(off, model="qwen3.8-max")
        assert out["reasoning_effort"] == "none" and "enable_thinking" not in out, off  # never enable_thinking
    out, notes = qwen({"enable_thinking": True, "thinking_budget": 300_000}, model="qwen3.8-max")
    assert "reasoning_effort" not in out and "enable_thinking" not in out and out["thinking_budget"] == 262_144
    assert notes == ["thinking_budget 300000 lowered to 262144, qwen3.8-max's most"]


def test_explicit_qwen_knobs_win_over_reasoning_effort():
    out, notes = qwen({"enable_thinking": False, "reasoning_effort": "high"})
    assert out["enable_thinking"] is False and "thinking_budget" not in out and notes == []
    out, _ = qwen({"thinking_budget": 300})  # a budget alone asks for thinking within it
    assert out["thinking_budget"] == 300 and out["enable_thinking"] is True


@pytest.mark.parametrize("model,sent", [
    ("coder-model", {"enable_thinking": False}), ("qwen3.6-plus", {"enable_thinking": False}),
    ("qwen3.5-plus-2026-02-15", {"enable_thinking": False}),  # a dated snapshot reads as its family
    ("qwen3.9-plus", {"enable_thinking": False}),  # not in the table: Qwen 3.5 and later think by default
    ("qwen3.8-max", {"reasoning_effort": "none"}),
    ("qwen-plus", {}), ("qwen3-max-2026-01-23", {}), ("qwen3-coder-plus", {}), ("qwen3-next-80b-a3b-thinking", {}),
    ("somebody-elses-model", {})])
def test_without_a_reasoning_ask_a_model_that_thinks_by_default_is_told_not_to(model, sent):
    out, notes = qwen({"stream": True}, model=model)
    assert {k: out[k] for k in ("enable_thinking", "thinking_budget", "reasoning_effort") if k in out} == sent
    assert notes == []


def test_budgets_within_each_models_most_and_where_required():
    out, notes = qwen({"enable_thinking": True, "thinking_budget": 100_000}, model="qwen3.6-plus")
    assert out["thinking_budget"] == 81_920 and notes == ["thinking_budget 100000 lowered to 81920, qwen3.6-plus's most"]
    out, _ = qwen({"reasoning_effort": "high"}, model="qwen3.5-27b")  # refused without a budget: its most
    assert out["enable_thinking"] is True and out["thinking_budget"] == 81_920
    out, _ = qwen({"reasoning_effort": "low"}, model="qwen3.5-27b")
    assert out["thinking_budget"] == 1024
    out, _ = qwen({"thinking_budget": 50_000}, model="coder-model")  # its most not documented: as asked
    assert out["thinking_budget"] == 50_000


def test_a_model_without_thinking_gets_no_knob_and_the_ask_is_noted():
    out, notes = qwen({"reasoning_effort": "high", "thinking_budget": 4096}, model="qwen3-coder-plus")
    assert not {"enable_thinking", "thinking_budget", "reasoning_effort"} & set(out)
    assert notes == ["thinking not asked of Qwen: qwen3-coder-plus does not think"]
    out, notes = qwen({"enable_thinking": False}, model="qwen3-coder-plus")
    assert "enable_thinking" not in out and notes == []


def test_the_anthropic_base_gets_thinking_only_when_asked():
    notes: list[str] = []
    ask = {"model": "m", "max_tokens": 64, "messages": [USER]}
    off = {"thinking": {"type": "disabled"}}
    assert knobs.anthropic_thinking({**ask, "model": "qwen3.6-plus"}) == {**ask, "model": "qwen3.6-plus", **off}
    assert knobs.anthropic_thinking({**ask, "model": "qwen-plus"}) == {**ask, "model": "qwen-plus"}
    on = {"thinking": {"type": "enabled", "budget_tokens": 2048}}
    assert knobs.anthropic_thinking({**ask, "model": "qwen3.6-plus", **on}) == {**ask, "model": "qwen3.6-plus", **on}
    thinker = "qwen3-next-80b-a3b-thinking"
    assert knobs.anthropic_thinking({**ask, "model": thinker, **off}, notes) == {**ask, "model": thinker}
    assert knobs.anthropic_thinking({**ask, "model": "qwen3-coder-plus", **on}, notes) == {
        **ask, "model": "qwen3-coder-plus"}
    assert notes == ["thinking stays on: qwen3-next-80b-a3b-thinking always thinks",
                     "thinking not asked of Qwen: qwen3-coder-plus does not think"]


def test_json_mode_and_a_forced_tool_read_from_the_body():
    assert knobs.json_mode({"response_format": {"type": "json_schema"}})
    assert not knobs.json_mode({"response_format": {"type": "text"}}) and not knobs.json_mode({"response_format": "x"})
    assert knobs.forced_tool({"tools": TOOLS, "tool_choice": "required"})
    assert not knobs.forced_tool({"tool_choice": "required"})  # no tools: nothing to force
    assert not knobs.forced_tool({"tools": TOOLS, "tool_choice": "auto"})


def test_the_clients_body_is_never_altered():
    body = {"model": "coder-model", "enable_thinking": True, "thinking_budget": 10, "reasoning_effort": "low"}
    before = dict(body)
    knobs.thinking_knobs(body, "low")
    assert body == before


@pytest.mark.parametrize("model", ["qwen4-flash", "qwen4.1-max"])
def test_a_model_nothing_sourced_describes_gets_the_clients_knobs_as_sent(model):
    """No family rule speaks of Qwen 4 (the one qwen4 model with a source takes reasoning_effort): the client's
    effort goes as it asked, never a bare enable_thinking guessed from the name."""
    for effort in ("high", "xhigh", "max"):
        out, notes = qwen({"reasoning_effort": effort}, model=model, oauth=False)
        assert out["reasoning_effort"] == effort and "enable_thinking" not in out and "thinking_budget" not in out
        assert notes == []
    out, _ = qwen({}, model=model, oauth=False)
    assert not {"reasoning_effort", "enable_thinking", "thinking_budget"} & set(out)  # nothing asked, nothing sent
    out, _ = qwen({"enable_thinking": False}, model=model, oauth=False)
    assert out["enable_thinking"] is False


def test_a_family_rule_with_a_source_still_speaks_for_a_name_the_rows_do_not_know():
    out, _ = qwen({"reasoning_effort": "max"}, model="qwen3.8-max-1201", oauth=False)
    assert out["reasoning_effort"] == "xhigh"  # effort-native (source D): its highest
    out, _ = qwen({}, model="qwen3.9-plus", oauth=False)
    assert out["enable_thinking"] is False  # Qwen 3.5 and later think by default (sources B, L): told not to


@pytest.mark.parametrize("model,asked,sent", [
    ("qwen3.6-plus", {}, {"reasoning": {"effort": "none"}}),  # thinks by default, nothing asked: off
    ("qwen3.6-plus", {"reasoning": {"effort": "high"}}, {"reasoning": {"effort": "high"}}),
    ("qwen3-coder-plus", {"reasoning": {"effort": "high", "summary": "auto"}}, {"reasoning": {"summary": "auto"}}),
    ("qwen3.8-max", {"reasoning": {"effort": "max"}}, {"reasoning": {"effort": "xhigh"}}),
    ("qwen3.8-max", {}, {"reasoning": {"effort": "none"}}),
    ("qwen-plus", {}, {}),  # does not think by default: nothing to say
    ("qwen4-flash", {"reasoning": {"effort": "max"}}, {"reasoning": {"effort": "max"}}),  # unknown: as sent
])
def test_qwens_own_responses_api_gets_the_same_thinking_as_the_translation(model, asked, sent):
    body = {"model": model, "input": "hi", **asked}
    out = knobs.responses_thinking(body)
    assert {k: v for k, v in out.items() if k in ("reasoning", "enable_thinking")} == sent
