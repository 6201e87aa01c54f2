"""Qwen's thinking per model, as DashScope applies it: whether a request runs in thinking mode, and the 400s
for the knobs a model refuses. Model Studio's "Deep thinking" page (read 2026-11-24) and the threads quoted
below; each model's knobs are the gateway's catalogue's (catalogue.py reads addons/gateway/models/catalogue.toml:
`thinking`, `thinks`, `budget`, `budget_required`, `efforts`), as docs/compatibility.md lists them.

Per model: (mode, thinks by default, largest `thinking_budget`, budget required with `enable_thinking: true`,
`reasoning_effort` values taken natively). Modes: "hybrid" (`enable_thinking` switches), "only" (always
thinks, refuses `enable_thinking: false`), "effort" (switched by `reasoning_effort`, refuses it together
with `thinking_budget`), "none" (no thinking: the knobs are ignored, as the page lists such models under no
mode and clients that send them to Qwen-Coder get answers, never a 400).
"""

from __future__ import annotations

from . import catalogue

HYBRID, ONLY, EFFORT, NONE = "hybrid", "only", "effort", "none"
ALGO = "<400> InternalError.Algo.InvalidParameter: "

Mode = tuple[str, bool, int | None, bool, tuple[str, ...]]
# A model the catalogue does not name (the `extra_models` switch): a plain hybrid model, off by default, whose
# budget nothing bounds.
UNKNOWN: Mode = (HYBRID, False, None, False, ())


def _mode(model: object) -> Mode:
    row = catalogue.row(model)
    if row is None:
        return UNKNOWN
    return (row.get("thinking", NONE), bool(row.get("thinks")), row.get("budget"), bool(row.get("budget_required")),
            tuple(row.get("efforts", ())))


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
        if "thinking_budget" in body:  # opencode#41531 (qwen3.8-max); APIYI's qwen4-max reference (catalogue K)
            return "'reasoning_effort' and 'thinking_budget' cannot be set simultaneously"
        if effort not in efforts:  # GCMP#384 (qwen3.8-max's list; each model's is the catalogue's `efforts`)
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
