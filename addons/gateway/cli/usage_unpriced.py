"""What qwen-usage says of the requests nothing priced (the ledger's `cost_unit` 'unpriced', issue 59): a view's
USD sums that would include them are unknown (None: `unknown` in the tables, null in JSON), never $0, and one line
names the models they were on. The same of the answers Qwen reported no usage for (`cost_unit` 'usage_unknown',
issue 79): their token sums are unknown too."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..observe.ledger import Ledger, SharedLedger

COUNT = "SUM(CASE WHEN cost_unit = 'unpriced' THEN 1 ELSE 0 END)"  # a view's column `unpriced`
NO_USAGE = "SUM(CASE WHEN cost_unit = 'usage_unknown' THEN 1 ELSE 0 END)"  # its column `usage_unknown`
UNPRICED, USAGE_UNKNOWN = "unpriced", "usage_unknown"  # pricing/prices.py's units without an amount
TOKEN_SUMS = ("prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens")
_MODEL = "COALESCE(NULLIF(upstream_model, ''), model)"
WHY = {UNPRICED: ("unpriced", "no price in USD: docs/keys.md#unpriced-models"),
       USAGE_UNKNOWN: ("usage unknown", "Qwen reported no usage: their tokens and cost are unknown; docs/usage.md")}


def unknown(row: dict, dollars: tuple[str, ...]) -> dict:
    """The row's USD sums, None (unknown) when some of its requests had no price or no usage; its token sums too
    when some had no usage."""
    unknown = (dollars if row.get("unpriced") or row.get("usage_unknown") else ()) + \
        (TOKEN_SUMS if row.get("usage_unknown") else ())
    for k in unknown:
        if k in row:
            row[k] = None
    return row


def models(ledger: Ledger | SharedLedger, where: str, args: tuple, unit: str = UNPRICED) -> list[tuple[str, int]]:
    """(model, requests of `unit`: unpriced, or usage_unknown) matching the view's condition, the most first."""
    rows = ledger.query(f"SELECT COALESCE({_MODEL}, '-'), COUNT(*) FROM usage WHERE cost_unit = ? AND "
                        f"({where}) GROUP BY COALESCE({_MODEL}, '-')", (unit, *args))
    return sorted(((str(m), int(n)) for m, n in rows), key=lambda mn: (-mn[1], mn[0]))


def line(counts: list[tuple[str, int]], unit: str = UNPRICED) -> str:
    """"unpriced: 2 requests on qwen3.7-flash, 1 on qwen3.6-plus (…)" ("usage unknown: …"), or "" when there are
    none."""
    if not counts:
        return ""
    (first, n), rest = counts[0], counts[1:]
    said = [f"{n:,} request{'s' if n != 1 else ''} on {first}"] + [f"{k:,} on {m}" for m, k in rest]
    name, why = WHY[unit]
    return f"{name}: {', '.join(said)} ({why})"
