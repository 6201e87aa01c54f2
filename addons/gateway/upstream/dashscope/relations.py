"""The relations Qwen holds between a request's numbers, in one table, and the step that keeps them after every
knob the gateway derives: a body the gateway builds is never one Qwen refuses for a relation.

Each relation: the number that must stay below another, in the shape of the body it applies to (the chat body
Qwen's compatible mode takes, a Messages body for a plan's Anthropic-compatible base), with Qwen's refusal and
its source. A client's own number over the line is lowered to the largest that keeps it, with a note on the
flow; when no valid number is left (a cap of 1 leaves no budget), the request is refused locally, in the
client's terms, before anything is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeGuard

from ...errors import GatewayError
from ...exchange import note


@dataclass(frozen=True, slots=True)
class Below:
    lower: tuple[str, ...]  # the path of the number that must stay below `upper` (a field, or an object's field)
    upper: str
    refusal: str  # Qwen's words when it does not (the numbers in brackets)
    source: str


# The gateway's own relations (and the ones the emulator plays, scripts/emulator/rules.py):
RELATIONS = (
    Below(("thinking_budget",), "max_completion_tokens", "max_completion_tokens [a] must be greater than "
          "thinking_budget [b]", "DashScope's 400 (OpenMinis #35, qwen3.7-max, 2026-06; dashscope-rules.md)"),
    Below(("thinking_budget",), "max_tokens", "max_tokens [a] must be greater than thinking_budget [b]",
          "the same rule under the legacy name (Qwen names the parameter it received)"),
    Below(("thinking", "budget_tokens"), "max_tokens", "`max_tokens` must be greater than `thinking.budget_tokens`",
          "Anthropic's Messages API, which the plans' Anthropic-compatible bases take"),
)


def _int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def keep(body: dict, notes: list[str] | None = None) -> dict:
    """The body with every relation of the table held: a number over its line lowered (said on the flow), or
    GatewayError 400 when none is left. The same body when all hold (the common case: two lookups each)."""
    if "thinking_budget" not in body and "thinking" not in body:  # most requests: no budget, nothing to hold
        return body
    out = body
    for rel in RELATIONS:
        holder: object = out
        for key in rel.lower[:-1]:
            holder = holder.get(key) if isinstance(holder, dict) else None
        lower = holder.get(rel.lower[-1]) if isinstance(holder, dict) else None
        upper = out.get(rel.upper)
        if not _int(lower) or not _int(upper) or lower < upper:
            continue
        name = ".".join(rel.lower)
        if upper <= 1:
            raise GatewayError(400, f"{rel.upper} {upper} leaves no room for thinking: Qwen takes {name} only below "
                                    f"{rel.upper} (here {name} is {lower}). Ask for more output tokens, or for no "
                                    "thinking.", param=rel.upper, code="invalid_value")
        note(notes, f"{name} {lower} lowered to {upper - 1}: Qwen takes it only below {rel.upper} ({upper})")
        out = _with(out, rel.lower, upper - 1)
    return out


def _with(body: dict, path: tuple[str, ...], value: int) -> dict:
    """A copy of `body` with the number at `path` replaced (copy on write: the client's body is never altered)."""
    if len(path) == 1:
        return {**body, path[0]: value}
    return {**body, path[0]: _with(body[path[0]], path[1:], value)}
