"""Qwen's thinking per model, as DashScope applies it: whether a request runs in thinking mode, and the 400s
for the knobs a model refuses. Model Studio's "Deep thinking" page (read 2026-11-24) and the threads quoted
below; docs/compatibility.md#thinking-per-model holds the same table (tests/unit/upstream/dashscope/test_thinking.py keeps the
gateway's, this one and the doc in step).

Per model: (mode, thinks by default, largest `thinking_budget`, budget required with `enable_thinking: true`,
`reasoning_effort` values taken natively). Modes: "hybrid" (`enable_thinking` switches), "only" (always
thinks, refuses `enable_thinking: false`), "effort" (switched by `reasoning_effort`, refuses it together
with `thinking_budget`), "none" (no thinking: the knobs are ignored, as the page lists such models under no
mode and clients that send them to Qwen-Coder get answers, never a 400).
"""

from __future__ import annotations

HYBRID, ONLY, EFFORT, NONE = "hybrid", "only", "effort", "none"
QWEN38_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")  # the 400's own list (GCMP#384)

MODELS: dict[str, tuple[str, bool, int | None, bool, tuple[str, ...]]] = {
    "coder-model": (HYBRID, True, None, False, ()),
    "vision-model": (HYBRID, False, None, False, ()),
    "qwen3.8-max": (EFFORT, True, 262_144, False, QWEN38_EFFORTS),
    "qwen3.8-flash": (HYBRID, True, None, False, ()),
    "qwen3.7-max": (HYBRID, True, 262_144, False, ()),
    "qwen3.7-plus": (HYBRID, True, 262_144, False, ()),
    "qwen3.7-flash": (HYBRID, True, None, False, ()),
    "qwen3.6-plus": (HYBRID, True, 81_920, False, ()),
    "qwen3.6-flash": (HYBRID, True, 131_072, False, ()),
    "qwen3.5-plus": (HYBRID, True, 81_920, False, ()),
    "qwen3.5-flash": (HYBRID, True, 81_920, False, ()),
    "qwen3.5-27b": (HYBRID, True, 81_920, True, ()),  # Qwen-Agent#941: the budget is required
    "qwen3-max": (NONE, False, None, False, ()),
    "qwen3-max-2026-01-23": (HYBRID, False, None, False, ()),
    "qwen3-coder-plus": (NONE, False, None, False, ()),
    "qwen3-coder-flash": (NONE, False, None, False, ()),
    "qwen-max": (NONE, False, None, False, ()),
    "qwen-plus": (HYBRID, False, 81_920, False, ()),
    "qwen-flash": (HYBRID, False, 81_920, False, ()),
    "qwen-turbo": (HYBRID, False, 38_912, False, ()),
    "qwen-vl-max": (NONE, False, None, False, ()),
    "qwen-vl-plus": (NONE, False, None, False, ()),
    "qwen3-vl-plus": (HYBRID, False, 81_920, False, ()),
    "qwen3-32b": (HYBRID, True, 38_912, False, ()),
    "qwq-plus": (ONLY, True, None, False, ()),
    "qwen3-235b-a22b-thinking-2507": (ONLY, True, 81_920, False, ()),
}
ALGO = "<400> InternalError.Algo.InvalidParameter: "


_UNKNOWN: tuple[str, bool, int | None, bool, tuple[str, ...]] = (NONE, False, None, False, ())


def _mode(model: object) -> tuple[str, bool, int | None, bool, tuple[str, ...]]:
    return MODELS.get(model, _UNKNOWN) if isinstance(model, str) else _UNKNOWN


def thinking_on(body: dict) -> bool:
    """Whether this request runs in thinking mode on its model (and so bills reasoning tokens)."""
    mode, default, _, _, _ = _mode(body.get("model"))
    if mode == NONE:
        return False
    if mode == ONLY:
        return True
    effort = body.get("reasoning_effort")
    if mode == EFFORT and isinstance(effort, str):
        return effort != "none"
    flag = body.get("enable_thinking")
    return flag if isinstance(flag, bool) else default


def check(body: dict) -> str | None:
    """The text of DashScope's 400 for the thinking knobs this model refuses, or None."""
    mode, _, most, required, efforts = _mode(body.get("model"))
    if mode == NONE:
        return None
    if mode == ONLY and body.get("enable_thinking") is False:  # new-api#1519, opensquilla#794
        return ALGO + "The value of the enable_thinking parameter is restricted to True."
    effort = body.get("reasoning_effort")
    if mode == EFFORT and effort is not None:
        if "thinking_budget" in body:  # opencode#41531
            return "'reasoning_effort' and 'thinking_budget' cannot be set simultaneously"
        if effort not in efforts:  # GCMP#384
            return "'reasoning_effort' must be one of: " + ", ".join(f"'{e}'" for e in efforts)
    budget = body.get("thinking_budget")
    if not thinking_on(body):
        return None
    if budget is None and required and body.get("enable_thinking") is True:  # Qwen-Agent#941
        return ALGO + "The thinking_budget parameter must be a positive integer and not greater than 0"
    if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool) or budget < 1
                               or (most is not None and budget > most)):  # cherry-studio#7263
        return ALGO + f"The thinking_budget parameter must be a positive integer and not greater than {most or 0}"
    return None
