"""What qwen-usage says of the requests nothing priced (the ledger's `cost_unit` 'unpriced', issue 59): a view's
USD sums that would include them are unknown (None: `unknown` in the tables, null in JSON), never $0, and one line
names the models they were on."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..observe.ledger import Ledger, SharedLedger

COUNT = "SUM(CASE WHEN cost_unit = 'unpriced' THEN 1 ELSE 0 END)"  # a view's column `unpriced`
_MODEL = "COALESCE(NULLIF(upstream_model, ''), model)"
WHY = "no price in USD: docs/keys.md#unpriced-models"


def unknown(row: dict, dollars: tuple[str, ...]) -> dict:
    """The row's USD sums, None (unknown) when some of its requests had no price."""
    if row.get("unpriced"):
        for k in dollars:
            if k in row:
                row[k] = None
    return row


def models(ledger: Ledger | SharedLedger, where: str, args: tuple) -> list[tuple[str, int]]:
    """(model, unpriced requests) matching the view's condition, the most first."""
    rows = ledger.query(f"SELECT COALESCE({_MODEL}, '-'), COUNT(*) FROM usage WHERE cost_unit = 'unpriced' AND "
                        f"({where}) GROUP BY COALESCE({_MODEL}, '-')", args)
    return sorted(((str(m), int(n)) for m, n in rows), key=lambda mn: (-mn[1], mn[0]))


def line(counts: list[tuple[str, int]]) -> str:
    """"unpriced: 2 requests on qwen3.7-flash, 1 on qwen3.6-plus (…)", or "" when there are none."""
    if not counts:
        return ""
    (first, n), rest = counts[0], counts[1:]
    said = [f"{n:,} request{'s' if n != 1 else ''} on {first}"] + [f"{k:,} on {m}" for m, k in rest]
    return f"unpriced: {', '.join(said)} ({WHY})"
