"""qwen-usage: what the gateway spent, from its usage ledger (<state_dir>/usage.sqlite3).

    qwen-usage                 today, by account and model
    qwen-usage days            per day
    qwen-usage accounts        per account (all time, or --since)
    qwen-usage models          per model
    add --json for scripts
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .observe.ledger import Ledger

GROUPS = {"today": "account, upstream_model", "days": "day", "accounts": "account", "models": "upstream_model"}


def report(ledger: Ledger, view: str, since: str | None) -> list[dict]:
    where, args = "1=1", []
    if view == "today":
        where, args = "day = ?", [time.strftime("%Y-%m-%d", time.gmtime())]
    elif since:
        where, args = "day >= ?", [since]
    group = GROUPS[view]
    rows = ledger.query(
        f"SELECT {group}, COUNT(*), SUM(COALESCE(prompt_tokens,0)), SUM(COALESCE(completion_tokens,0)), "
        f"SUM(COALESCE(cached_tokens,0)), SUM(CASE WHEN status >= 400 OR status IS NULL THEN 1 ELSE 0 END) "
        f"FROM usage WHERE {where} GROUP BY {group} ORDER BY {group}", tuple(args))
    keys = [k.strip() for k in group.split(",")] + ["requests", "prompt_tokens", "completion_tokens",
                                                     "cached_tokens", "errors"]
    return [dict(zip(keys, r)) for r in rows]


def table(rows: list[dict]) -> str:
    if not rows:
        return "No requests recorded."
    head = list(rows[0])
    cells = [head] + [[str(r[k] if r[k] is not None else "-") for k in head] for r in rows]
    totals = ["total"] + [""] * (len(head) - 6) + [str(sum(r[k] or 0 for r in rows)) for k in head[-5:]]
    cells.append(totals)
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) if i >= len(head) - 5 else c.ljust(w) for i, (c, w) in
                               enumerate(zip(row, widths))).rstrip() for row in cells)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="qwen-usage", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("view", nargs="?", default="today", choices=sorted(GROUPS))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--since", help="YYYY-MM-DD (days, accounts, models)")
    ap.add_argument("--state-dir", help="default $QWEN_GATEWAY_HOME or ~/.qwen-gateway")
    a = ap.parse_args(argv)
    state = Path(a.state_dir or os.environ.get("QWEN_GATEWAY_HOME") or "~/.qwen-gateway").expanduser()
    path = state / "usage.sqlite3"
    if not path.exists():
        print(f"qwen-usage: no ledger at {path} yet (start the gateway and send a request)", file=sys.stderr)
        return 1
    rows = report(Ledger(path), a.view, a.since)
    print(json.dumps(rows, indent=2) if a.json else table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
