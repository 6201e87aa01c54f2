"""qwen-usage conversations: per conversation the cache doctor saw (the ledger's `conversation`, a digest), its
turns, how much of their prompts Qwen read from its cache, the turns that missed more than the turn before, the
tokens and USD those misses lost (unknown when a miss of some tokens had no price: its request unpriced, or the price
of the cache read it missed not given — never $0), and their causes with the turns (cache/compare.CAUSES); and how many turns asked
Qwen's 1-hour lifetime (the ledger's `cache_ttl`: a client's own, or qwen_cache_lifetime=auto's choice)."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import TYPE_CHECKING

from ..pricing.prices import usd
from .usage_text import UNKNOWN

if TYPE_CHECKING:
    from ..observe.ledger import Ledger, SharedLedger

SHOWN = 12  # a conversation's digest as shown: its first 12 hex digits
NAMES = ("conversation", "first_seen", "turns", "hour_turns", "prompt_tokens", "cached_tokens", "hit_share", "missed_turns",
         "lost_tokens", "lost_usd", "causes")


def conversations(ledger: Ledger | SharedLedger, where: str, args: tuple, limit: int = 20) -> list[dict]:
    """The newest `limit` conversations (by their last turn) matching the filters, oldest first."""
    rows = ledger.query(
        "SELECT conversation, MIN(ts), COUNT(*), SUM(CASE WHEN cache_ttl >= 3600 THEN 1 ELSE 0 END), "
        "SUM(COALESCE(prompt_tokens, 0)), SUM(COALESCE(cached_tokens, 0)), "
        "SUM(CASE WHEN cache_miss IS NOT NULL THEN 1 ELSE 0 END), SUM(COALESCE(miss_tokens, 0)), "
        f"SUM(COALESCE(miss_usd, 0)), SUM(CASE WHEN cache_miss IS NOT NULL AND (cost_unit = 'unpriced' OR (miss_usd "
        f"IS NULL AND miss_tokens > 0)) THEN 1 ELSE 0 END) FROM usage WHERE conversation IS NOT NULL AND {where} "
        "GROUP BY conversation ORDER BY MAX(ts) DESC LIMIT ?", args + (limit,))
    if not rows:
        return []
    keys = [r[0] for r in rows]
    misses = ledger.query(f"SELECT conversation, cache_miss, cache_turn FROM usage WHERE cache_miss IS NOT NULL "
                          f"AND conversation IN ({', '.join('?' * len(keys))}) AND {where} ORDER BY ts",
                          tuple(keys) + args)
    turns: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for conversation, cause, turn in misses:
        turns[conversation][cause].append(turn)
    out = []
    for conversation, first, n, hour, prompt, cached, missed, lost, lost_usd, unpriced in reversed(rows):
        out.append(dict(zip(NAMES, (
            conversation[:SHOWN], time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(first)), int(n), int(hour),
            int(prompt),
            int(cached), round(int(cached) / int(prompt), 2) if prompt else 0.0, int(missed), int(lost),
            None if unpriced else round(float(lost_usd or 0), 6),  # a miss without a price: unknown, never $0
            causes(turns.get(conversation, {}))), strict=True)))
    return out


def causes(by_cause: dict[str, list[int]], most: int = 3) -> str:
    """The most frequent causes, each with its turns: "system ×2 (turns 2, 3), tool_order (turn 5)"."""
    counts = Counter({cause: len(turns) for cause, turns in by_cause.items()})
    shown = []
    for cause, n in counts.most_common(most):
        turns = sorted(t for t in by_cause[cause] if t is not None)[:5]
        where = f" (turn{'s' if len(turns) > 1 else ''} {', '.join(map(str, turns))})" if turns else ""
        shown.append(f"{cause}{f' ×{n}' if n > 1 else ''}{where}")
    return ", ".join(shown)


def lost_usd(row: dict) -> str:
    """What a conversation's misses lost in USD; unknown when a missed turn had no price."""
    return UNKNOWN if row["lost_usd"] is None else usd(row["lost_usd"])


def table(rows: list[dict]) -> str:
    if not rows:
        return "No conversations recorded (the cache doctor names a conversation's turns in the ledger)."
    heads = ["conversation", "first seen", "turns", "1h", "prompt", "cached", "hit", "missed", "lost", "lost USD", "causes"]
    cells = [heads] + [[r["conversation"], r["first_seen"], f"{r['turns']:,}", f"{r['hour_turns']:,}",
                        f"{r['prompt_tokens']:,}",
                        f"{r['cached_tokens']:,}", f"{round(r['hit_share'] * 100)}%", f"{r['missed_turns']:,}",
                        f"{r['lost_tokens']:,}", lost_usd(r), r["causes"]] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(heads))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i in (0, 1, 10) else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
