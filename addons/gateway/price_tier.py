"""A price tier (USD per million tokens for prompts up to a size), and one read from the user's `qwen_prices_file`
(pricing/prices.py loads the file). Below both folders that hold tiers: the prices a provider's model list gives
(models/listed.py, models/live.py) and the price table (pricing/), which reads the model catalogue — so the
imports between models/ and pricing/ run one way (tests/repo/test_layers.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Tier:
    up_to: int | None  # prompt tokens (None: no bound)
    input: float
    output: float
    cached: float | None = None
    thinking_output: float | None = None
    cache_read: float | None = None  # explicit cache hits (None: EXPLICIT_HIT of the input price)
    cache_write: float | None = None  # explicit cache creation (None: CREATION of the input price)
    cache_write_1h: float | None = None  # Qwen4's hour-long creation (None: unpriced, never guessed)
    name: str = ""  # as its source names it (Model Studio's list: "Input<=32k"); "": the table's own


def parse(price: object, where: str) -> tuple[Tier, ...]:
    """A model's tiers as the user's file writes them; ValueError naming what is wrong (`where`: the entry)."""
    if not isinstance(price, dict):
        raise ValueError(f"{where} must be an object with input and output (USD per million tokens)")
    raw = price.get("tiers", [price])
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{where}: tiers must be a list of prices")
    tiers = []
    for i, t in enumerate(raw):
        if not isinstance(t, dict) or not all(_number(t.get(k)) for k in ("input", "output")):
            raise ValueError(f"{where}: each price needs input and output, numbers ≥ 0 (USD per million tokens)")
        up_to = t.get("up_to")
        last = i == len(raw) - 1
        if (up_to is None) != last or (up_to is not None and not (isinstance(up_to, int) and up_to > 0)):
            raise ValueError(f"{where}: every tier but the last needs up_to (prompt tokens); the last has none")
        extra: dict[str, Any] = {k: float(t[k]) for k in ("cached", "thinking_output", "cache_read", "cache_write", "cache_write_1h")
                 if k in t and _number(t[k])}
        tiers.append(Tier(up_to, float(t["input"]), float(t["output"]), **extra))
    return tuple(tiers)


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
