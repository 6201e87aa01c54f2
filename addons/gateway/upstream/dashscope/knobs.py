"""Qwen's thinking knobs on the chat body (R2, R3, R9 of dashscope-rules.md), per model as thinking.py's table
says: thinking only when the client asks, in the model's own field, never a field the model refuses. Pure
functions, like rules.py's: each notes what it changed for the client.
"""

from __future__ import annotations

from collections.abc import Mapping

from ...exchange import note
from ...models.model_map import Thinking
from . import thinking

EFFORT_BUDGET = {"low": 1024, "medium": 8192}  # thinking_budget for OpenAI efforts; high: unbounded
_OFF_EFFORTS = ("none", "minimal")


def json_mode(body: dict) -> bool:
    rf = body.get("response_format")
    return isinstance(rf, dict) and rf.get("type") in ("json_object", "json_schema")


def forced_tool(body: dict) -> bool:
    choice = body.get("tool_choice")
    return bool(body.get("tools")) and (choice == "required" or isinstance(choice, dict))


def thinking_knobs(body: dict, effort: object = None, notes: list[str] | None = None, *,
                   learned: Mapping[str, Thinking] | None = None) -> dict:
    """Qwen's thinking fields for this model (thinking.py's table), from what the client asked (`enable_thinking`/
    `thinking_budget` as Qwen extras, or OpenAI's `reasoning_effort`): thinking only when asked (a model that
    thinks by default is told not to), in the model's own field; JSON mode and a forced tool choice need
    thinking off (the client's explicit output contract wins over a quality knob); a thinking-only model never
    gets thinking off; an effort-native model gets `reasoning_effort`, never with `thinking_budget`."""
    out = dict(body)
    model = str(out.get("model") or "")
    spec = thinking.spec(model, learned)
    explicit = out.pop("enable_thinking", None)
    explicit = explicit if isinstance(explicit, bool) else None
    budget = out.pop("thinking_budget", None)
    out.pop("reasoning_effort", None)
    effort = effort if isinstance(effort, str) else None
    asked = explicit if explicit is not None else (effort not in _OFF_EFFORTS if effort else
                                                   True if budget is not None else None)
    given = budget  # the client's own; an effort's budget below only for models that take no effort
    if budget is None and explicit is None and effort:
        budget = EFFORT_BUDGET.get(effort)
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
    if budget is None and spec.budget_required:
        budget = spec.budget  # Qwen refuses thinking on this model without a budget: its most
    if budget is not None:
        out["thinking_budget"] = _within(budget, spec, model, notes)
    return out


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


def anthropic_thinking(body: dict, notes: list[str] | None = None) -> dict:
    """A Messages body for a plan's Anthropic-compatible base, by the same table: `thinking: disabled` to a model
    that thinks by default when the client did not ask (Anthropic's models think only when asked), never
    `disabled` to a thinking-only model, no `thinking` at all to a model that does not think."""
    model = str(body.get("model") or "")
    spec = thinking.spec(model)
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
    return body
