"""The relations Qwen holds between a request's numbers (upstream/dashscope/relations.py), kept after every knob the
gateway derives: an effort's budget scaled to the cap sent, a lowered cap lowering the budget, a client's budget
over the line lowered with a note, nothing valid left refused locally. Each case is one Qwen refuses
("max_completion_tokens [1000] must be greater than thinking_budget [8192]") when the gateway sends it as it
was built before."""

from __future__ import annotations

import pytest

from qwen_gateway.errors import GatewayError
from qwen_gateway.upstream.dashscope import relations
from qwen_gateway.upstream.dashscope.request import chat_to_qwen, own_body
from qwen_gateway.accounts import Capability

USER = {"role": "user", "content": "hi"}


def qwen(body: dict, model: str, **kw) -> tuple[dict, list[str]]:
    notes: list[str] = []
    return chat_to_qwen({"model": "gpt-4o", "messages": [USER], **body}, model=model, oauth=False, notes=notes,
                        **kw), notes


def test_the_table_names_each_relation_with_its_refusal_and_source():
    assert [(".".join(r.lower), r.upper) for r in relations.RELATIONS] == [
        ("thinking_budget", "max_completion_tokens"), ("thinking_budget", "max_tokens"),
        ("thinking.budget_tokens", "max_tokens")]
    assert all(r.refusal and r.source for r in relations.RELATIONS)


@pytest.mark.parametrize("effort,cap,budget", [("medium", 1000, 500), ("low", 1000, 250), ("medium", 20000, 8192),
                                               ("low", 3, None)])
def test_an_efforts_budget_is_scaled_to_the_cap_sent(effort, cap, budget):
    out, notes = qwen({"reasoning_effort": effort, "max_completion_tokens": cap}, model="qwen-plus")
    assert out["enable_thinking"] is True and out.get("thinking_budget") == budget
    assert out.get("thinking_budget", 0) < out["max_completion_tokens"]
    assert bool(notes) == (budget != {"low": 1024, "medium": 8192}[effort])


@pytest.mark.parametrize("model,cap", [("qwen-plus", 32768), ("qwen3-235b-a22b-thinking-2507", 32768)])
def test_a_lowered_cap_lowers_the_clients_budget_with_it(model, cap):
    """Claude Code with CLAUDE_CODE_MAX_OUTPUT_TOKENS=64000 (max_tokens 64000, budget_tokens 63999) as the Messages
    translation hands them on, to a hybrid and a thinking-only model capped at 32,768 (their budgets go to
    81,920: the cap is what lowers it)."""
    out, notes = qwen({"max_completion_tokens": 64000, "thinking_budget": 63999, "enable_thinking": True}, model=model)
    assert out["max_completion_tokens"] == cap and out["thinking_budget"] == cap - 1
    assert notes[-1] == f"thinking_budget 63999 lowered to {cap - 1}: Qwen takes it only below max_completion_tokens " \
                        f"({cap})"


def test_a_clients_own_budget_at_its_cap_is_lowered_and_said():
    out, notes = qwen({"max_completion_tokens": 4000, "thinking_budget": 6000, "enable_thinking": True},
                      model="qwen-plus")
    assert (out["max_completion_tokens"], out["thinking_budget"]) == (4000, 3999) and len(notes) == 1


def test_an_unknown_models_budget_keeps_the_relation_too():
    out, _ = qwen({"max_completion_tokens": 2000, "thinking_budget": 5000, "enable_thinking": True},
                  model="qwen4-flash")
    assert (out["enable_thinking"], out["thinking_budget"]) == (True, 1999)


def test_nothing_valid_left_is_refused_locally_in_the_clients_terms():
    with pytest.raises(GatewayError) as caught:
        qwen({"max_completion_tokens": 1, "thinking_budget": 100, "enable_thinking": True}, model="qwen-plus")
    assert (caught.value.status, caught.value.param, caught.value.code) == (400, "max_completion_tokens",
                                                                            "invalid_value")
    assert "leaves no room for thinking" in caught.value.message


def test_an_effort_native_model_never_gets_a_budget_whatever_the_cap():
    out, _ = qwen({"reasoning_effort": "medium", "max_completion_tokens": 1000}, model="qwen3.8-max")
    assert out["reasoning_effort"] == "medium" and "thinking_budget" not in out


def test_the_anthropic_base_gets_a_budget_below_its_lowered_cap():
    body = {"model": "claude-sonnet-4-5", "max_tokens": 64000, "thinking": {"type": "enabled", "budget_tokens": 63999},
            "messages": [USER]}
    notes: list[str] = []
    out = own_body(body, model="qwen-plus", capability=Capability.CHAT, notes=notes)
    assert out["max_tokens"] == 32768 and out["thinking"] == {"type": "enabled", "budget_tokens": 32767}
    assert body["thinking"]["budget_tokens"] == 63999  # the client's body is never altered


def test_a_body_that_holds_every_relation_is_returned_as_it_is():
    body = {"max_completion_tokens": 4000, "thinking_budget": 100}
    assert relations.keep(body) is body
