"""qwen-usage: what the gateway spent, from its usage ledger (<state_dir>/usage.sqlite3).

    qwen-usage                   today, by account and model
    qwen-usage days              per day
    qwen-usage accounts          per account
    qwen-usage models            per Qwen model
    --since YYYY-MM-DD           only from that (local) day on (days, accounts, models)
    --json                       rows as JSON, for scripts
    --state-dir DIR              default: $QWEN_GATEWAY_HOME, else ~/.qwen-gateway

Token counts are the usage Qwen reported; "errors" counts requests answered with an error status or
whose stream ended with an error.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

from .observe.ledger import FILENAME, Ledger

# The Qwen model that answered; for requests that never reached Qwen (context guard), the model asked for.
_MODEL = "COALESCE(NULLIF(upstream_model, ''), model)"
VIEWS = {  # view -> (key column expressions, as named in the output)
    "today": (("account", "account"), (_MODEL, "model")),
    "days": (("day", "day"),),
    "accounts": (("account", "account"),),
    "models": ((_MODEL, "model"),),
}
SUMS = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens", "errors")


def report(ledger: Ledger, view: str, since: str | None = None, today: str | None = None) -> list[dict]:
    """Aggregated rows of one view, as dicts (keys, then SUMS)."""
    keys = VIEWS[view]
    if view == "today":
        where, args = "day = ?", (today or time.strftime("%Y-%m-%d"),)
    elif since:
        where, args = "day >= ?", (since,)
    else:
        where, args = "1=1", ()
    cols = ", ".join(f"COALESCE({c}, '-')" for c, _ in keys)
    rows = ledger.query(
        f"SELECT {cols}, COUNT(*), SUM(COALESCE(prompt_tokens, 0)), SUM(COALESCE(completion_tokens, 0)), "
        f"SUM(COALESCE(cached_tokens, 0)), "
        f"SUM(CASE WHEN status IS NULL OR status >= 400 OR error IS NOT NULL THEN 1 ELSE 0 END) "
        f"FROM usage WHERE {where} GROUP BY {cols} ORDER BY {cols}", args)
    names = [name for _, name in keys] + list(SUMS)
    return [dict(zip(names, r)) for r in rows]


def table(rows: list[dict]) -> str:
    """A plain-text table with a total line."""
    if not rows:
        return "No requests recorded."
    head = list(rows[0])
    nkeys = len(head) - len(SUMS)
    cells = [[h.replace("_tokens", "").replace("_", " ") for h in head]]
    cells += [[str(r[k]) for k in head[:nkeys]] + [f"{r[k]:,}" for k in SUMS] for r in rows]
    cells.append(["total"] + [""] * (nkeys - 1) + [f"{sum(r[k] for r in rows):,}" for k in SUMS])
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    lines = []
    for n, row in enumerate(cells):
        line = "  ".join(c.ljust(w) if i < nkeys else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        lines.append(line.rstrip())
        if n in (0, len(cells) - 2):
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _day(value: str) -> str:
    try:
        return datetime.date.fromisoformat(value).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="qwen-usage", description=__doc__.split("\n", 1)[0],
                                 epilog=__doc__.split("\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("view", nargs="?", default="today", choices=list(VIEWS), help="what to group by (default: today)")
    ap.add_argument("--json", action="store_true", help="print rows as JSON")
    ap.add_argument("--since", type=_day, metavar="YYYY-MM-DD", help="only from this day on")
    ap.add_argument("--state-dir", metavar="DIR", help="the gateway's state folder")
    a = ap.parse_args(argv)
    state = Path(a.state_dir or os.environ.get("QWEN_GATEWAY_HOME") or "~/.qwen-gateway").expanduser()
    path = state / FILENAME
    if path.exists():
        ledger = Ledger(path)
        try:
            rows = report(ledger, a.view, a.since)
        finally:
            ledger.close()
    else:
        rows = []
        if not a.json:
            print(f"qwen-usage: no ledger at {path} yet (the gateway writes it on its first request)",
                  file=sys.stderr)
    print(json.dumps(rows, indent=2) if a.json else table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
