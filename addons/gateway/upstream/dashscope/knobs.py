"""Qwen's thinking knobs on the chat body (R2, R3, R9 of dashscope-rules.md), per model as thinking.py's table
says: thinking only when the client asks, in the model's own field, never a field the model refuses; for a
model neither the catalogue nor its family rules describe, the client's own knobs as sent. Pure functions,
like rules.py's: each notes what it changed for the client. The budget a knob derives stays below the output
cap sent (relations.py keeps the client's own).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...exchange import note
from ...models.catalogue import Thinking
from ...models.learned import BUDGET
from . import thinking

if TYPE_CHECKING:
    from ...models.learned import LearnedFacts

# thinking_budget for OpenAI's efforts (high: the model's own), at most this share of the output cap sent: an
# effort never asks more thinking than the answer has room for
EFFORT_BUDGET = {"low": 1024, "medium": 8192}
EFFORT_SHARE = {"low": 4, "medium": 2}  # a quarter, a half
_OFF_EFFORTS = ("none", "minimal")


def json_mode(body: dict) -> bool:
    rf = body.get("response_format")
    return isinstance(rf, dict) and rf.get("type") in ("json_object", "json_schema")


def forced_tool(body: dict) -> bool:
    choice = body.get("tool_choice")
    return bool(body.get("tools")) and (choice == "required" or isinstance(choice, dict))


def thinking_knobs(body: dict, effort: object = None, notes: list[str] | None = None, *,
                   learned: LearnedFacts | None = None) -> dict:
    """Qwen's thinking fields for this model (thinking.py's table), from what the client asked (`enable_thinking`/
    `thinking_budget` as Qwen extras, or OpenAI's `reasoning_effort`): thinking only when asked (a model that
    thinks by default is told not to), in the model's own field; JSON mode and a forced tool choice need
    thinking off (the client's explicit output contract wins over a quality knob); a thinking-only model never
    gets thinking off; an effort-native model gets `reasoning_effort`, never with `thinking_budget`."""
    out = dict(body)
    model = str(out.get("model") or "")
    spec = thinking.spec(model, learned.thinking if learned is not None else None)
    if spec.kind is None:  # nothing sourced says how it thinks: the client's knobs go as sent
        if isinstance(effort, str):
            out["reasoning_effort"] = effort
        return out
    if learned is not None and (most := learned.value(model, BUDGET)) is not None:  # Qwen's word wins
        spec = thinking.with_budget(spec, most)
    explicit = out.pop("enable_thinking", None)
    explicit = explicit if isinstance(explicit, bool) else None
    budget = out.pop("thinking_budget", None)
    out.pop("reasoning_effort", None)
    effort = effort if isinstance(effort, str) else None
    asked = explicit if explicit is not None else (effort not in _OFF_EFFORTS if effort else
                                                   True if budget is not None else None)
    given = budget  # the client's own; an effort's budget (`derived`) only for models that take no effort
    derived = effort if budget is None and explicit is None and effort else None
    why = "JSON output (response_format)" if json_mode(out) else "a forced tool_choice" if forced_tool(out) else None

    if spec.kind is Thinking.NONE:
        if asked:
            note(notes, f"thinking not asked of Qwen: {model} does not think")
        return out
    if spec.kind is Thinking.ONLY:
        if asked is False:
            note(notes, f"thinking stays on: {model} always thinks")
        if forced_tool(out):
            out["tool_choice"] = "auto"
            note(notes, f"forced tool_choice sent as auto: {model} always thinks and Qwen refuses a forced "
                        "tool choice in thinking mode")
        if derived:
            budget = effort_budget(derived, out.get("max_completion_tokens"), notes)
        if budget is not None:
            out["thinking_budget"] = _within(budget, spec, model, notes)
        return out
    if why:
        _off(out, spec)
        if asked:
            note(notes, f"thinking off: Qwen refuses {why} in thinking mode")
        return out
    if not asked:  # off when asked off, and when not asked on a model that thinks by default
        if asked is False or spec.default_on:
            _off(out, spec)
        return out
    if spec.kind is Thinking.EFFORT:
        return _effort(out, spec, effort if explicit is None else None, given, notes)
    out["enable_thinking"] = True
    if derived:
        budget = effort_budget(derived, out.get("max_completion_tokens"), notes)
    if budget is None and spec.budget_required:
        budget = spec.budget  # Qwen refuses thinking on this model without a budget: its most
    if budget is not None:
        out["thinking_budget"] = _within(budget, spec, model, notes)
    return out


def effort_budget(effort: str, cap: object, notes: list[str] | None) -> int | None:
    """The thinking budget an OpenAI effort asks of a model that takes budgets: EFFORT_BUDGET, within its share
    of the output cap sent (None: the model's own; also when the cap leaves no room for one)."""
    fixed = EFFORT_BUDGET.get(effort)
    if fixed is None or not isinstance(cap, int) or isinstance(cap, bool) or fixed * EFFORT_SHARE[effort] <= cap:
        return fixed
    scaled = cap // EFFORT_SHARE[effort]
    note(notes, f"reasoning_effort {effort} sent as thinking_budget {scaled}: 1/{EFFORT_SHARE[effort]} of "
                f"max_completion_tokens {cap}" if scaled else f"reasoning_effort {effort}: no thinking_budget sent, "
                f"max_completion_tokens {cap} leaves no room for one")
    return scaled or None


def _off(out: dict, spec: thinking.Spec) -> None:
    if spec.kind is Thinking.EFFORT:
        out["reasoning_effort"] = "none"  # its own switch (the value Qwen's docs turn thinking off with)
    else:
        out["enable_thinking"] = False


def _effort(out: dict, spec: thinking.Spec, effort: str | None, budget: object, notes: list[str] | None) -> dict:
    """Thinking on an effort-native model: the effort it takes (OpenAI's `max` is its highest), or, asked on
    without one, its default effort and the budget if any (Qwen refuses the two together)."""
    model = out["model"]
    if effort is None:
        if budget is not None:
            out["thinking_budget"] = _within(budget, spec, model, notes)
        return out
    native = effort if effort in spec.efforts else spec.efforts[-1] if effort == "max" else "high"
    if native != effort:
        note(notes, f"reasoning_effort {effort} sent as {native}: {model} takes {', '.join(spec.efforts)}")
    out["reasoning_effort"] = native
    if budget is not None:
        note(notes, f"thinking_budget dropped: {model} takes reasoning_effort and refuses both")
    return out


def _within(budget: object, spec: thinking.Spec, model: str, notes: list[str] | None) -> object:
    """A budget within the model's most (Qwen's 400 otherwise: "... not greater than N")."""
    if isinstance(budget, int) and not isinstance(budget, bool) and spec.budget is not None and budget > spec.budget:
        note(notes, f"thinking_budget {budget} lowered to {spec.budget}, {model}'s most")
        return spec.budget
    return budget


def anthropic_thinking(body: dict, notes: list[str] | None = None, *, learned: LearnedFacts | None = None) -> dict:
    """A Messages body for a plan's Anthropic-compatible base, by the same table: `thinking: disabled` to a model
    that thinks by default when the client did not ask (Anthropic's models think only when asked), never
    `disabled` to a thinking-only model, no `thinking` at all to a model that does not think; a budget within
    the model's most (catalogue or learned)."""
    model = str(body.get("model") or "")
    spec = thinking.spec(model, learned.thinking if learned is not None else None)
    asked = body.get("thinking")
    kind = asked.get("type") if isinstance(asked, dict) else None
    if spec.kind is Thinking.NONE and kind is not None:
        if kind != "disabled":
            note(notes, f"thinking not asked of Qwen: {model} does not think")
        return {k: v for k, v in body.items() if k != "thinking"}
    if spec.kind is Thinking.ONLY and kind == "disabled":
        note(notes, f"thinking stays on: {model} always thinks")
        return {k: v for k, v in body.items() if k != "thinking"}
    if kind is None and spec.default_on and spec.kind is not Thinking.ONLY:
        return {**body, "thinking": {"type": "disabled"}}
    most = learned.value(model, BUDGET) if learned is not None else None
    spec = thinking.with_budget(spec, most) if most is not None else spec
    if kind == "enabled" and isinstance(asked, dict) and "budget_tokens" in asked:
        within = _within(asked["budget_tokens"], spec, model, notes)
        if within != asked["budget_tokens"]:
            return {**body, "thinking": {**asked, "budget_tokens": within}}
    return body


def responses_thinking(body: dict, notes: list[str] | None = None, *, learned: LearnedFacts | None = None) -> dict:
    """A body for Model Studio's own Responses API, by the same table as the translation: `reasoning.effort` is
    that API's knob for every model that thinks (it wins over `enable_thinking`), so a model that does not think
    gets none, an effort-native model one it takes, and a model that thinks by default is switched off when the
    client asked nothing; a model the table does not know gets the client's knobs as sent."""
    model = str(body.get("model") or "")
    spec = thinking.spec(model, learned.thinking if learned is not None else None)
    if spec.kind is None:
        return body
    out = dict(body)
    reasoning = dict(out["reasoning"]) if isinstance(out.get("reasoning"), dict) else {}
    effort = reasoning.pop("effort", None)
    effort = effort if isinstance(effort, str) else None
    flag = out.pop("enable_thinking", None)
    flag = flag if isinstance(flag, bool) else None
    asked = flag if flag is not None else (effort not in _OFF_EFFORTS if effort else None)
    if spec.kind is Thinking.NONE:
        if asked:
            note(notes, f"thinking not asked of Qwen: {model} does not think")
    elif spec.kind is Thinking.ONLY:
        if asked is False:
            note(notes, f"thinking stays on: {model} always thinks")
        elif effort:
            reasoning["effort"] = effort
    elif not asked:
        if asked is False or spec.default_on:
            reasoning["effort"] = "none"  # off, in the knob that wins
    elif spec.kind is Thinking.EFFORT and effort:
        native = effort if effort in spec.efforts else spec.efforts[-1] if effort == "max" else "high"
        if native != effort:
            note(notes, f"reasoning.effort {effort} sent as {native}: {model} takes {', '.join(spec.efforts)}")
        reasoning["effort"] = native
    elif effort:
        reasoning["effort"] = effort
    else:
        out["enable_thinking"] = True
    if reasoning:
        out["reasoning"] = reasoning
    else:
        out.pop("reasoning", None)
    return out
