"""Model Studio's partial mode ("Partial mode", help.aliyun.com/en/model-studio/partial-mode: the catalogue's
source AB): the last message is an assistant's prefix marked `"partial": true`, and the model generates from it,
the prefix billed as input. Non-thinking mode only, on the models the page lists (the catalogue's `partial`).

The emulator's answer from a prefix is its deterministic answer less the prefix, when the answer begins with it
(a stream continued where it broke); otherwise the whole answer follows the prefix. What Model Studio answers a
request the page does not allow is not documented: those refusals are assumed, in R2's shape (rules.py).
"""

from __future__ import annotations

from . import catalogue, rules
from .cache import text_of

NOT_LAST = rules.ALGO + "partial is only allowed on the last message, which must be an assistant message"  # assumed
NOT_SERVED = rules.ALGO + "The model does not support partial mode"  # assumed
THINKING = "Partial mode is not supported when enable_thinking is true"  # assumed, as R2 words json mode's


def check(body: dict) -> tuple[int, dict] | None:
    """The page's rules for a request that marks a message `partial`; None when it marks none or may."""
    msgs = body["messages"]
    marked = [i for i, m in enumerate(msgs) if m.get("partial") is True]
    if not marked:
        return None
    if marked != [len(msgs) - 1] or msgs[-1].get("role") != "assistant":
        return rules.invalid(NOT_LAST)
    if not (catalogue.row(body.get("model")) or {}).get("partial"):
        return rules.invalid(NOT_SERVED)
    if rules.thinking_on(body):  # "(non-thinking mode)" on every hybrid series the page lists
        return rules.invalid(THINKING)
    return None


def prefix(messages: list[dict]) -> str | None:
    """The prefix the answer goes on from; None: the request is not in partial mode."""
    last = messages[-1] if messages else {}
    return text_of(last.get("content")) if last.get("partial") is True else None


def went_on(text: str, start: str | None) -> str:
    """The answer from the prefix on: the deterministic answer less the prefix when it begins with it."""
    return text[len(start):] if start and text.startswith(start) else text
