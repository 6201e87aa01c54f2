"""qwen-usage: what the gateway spent and answered, from its usage ledger (<state_dir>/usage.sqlite3).

    qwen-usage                   today, by account and model
    qwen-usage days              per day
    qwen-usage accounts          per account
    qwen-usage models            per Qwen model
    qwen-usage requests          the most recent requests, one per line (--limit N, default 20)
    qwen-usage conversations     per conversation: turns, cache hit share, misses, tokens and USD lost, causes
    qwen-usage --by key          per named client key (qwen-keys): requests, refused, tokens, cost in USD and
                                 plan units (with a view: today's, or per day with `days`)
    qwen-usage learned           what Qwen's refusals taught the gateways (qwen-usage learned --help)
    qwen-usage batches           the batches made, each with the advice its creation gave: a shared prefix
                                 read from the cache one by one against the batch (qwen-usage batches --help)
    qwen-usage report            one HTML page: tokens and requests per day by model and account, error
                                 rates, the slowest requests (--limit N of them, default 10), the newest
                                 20 conversations (--out/-o FILE, default usage-report.html in the state
                                 folder); prints the file's path

Filters, for every view:
    --since WHEN                 YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] (local time), or an age: 90s, 30m, 6h, 7d
    --errors                     only requests answered with an error (or whose stream ended in one)
    --status CODE                only this status (503) or class (5xx)
    --account NAME               only this account ("-": requests no account answered)
    --model NAME                 only this model (the one asked for, or the Qwen model)
    --key NAME                   only this named client key ("-": requests without one)
    --json                       rows as JSON, for scripts
    --state-dir DIR              default: $QWEN_GATEWAY_HOME, else ~/.qwen-gateway
    --state-url URL              the gateways' shared PostgreSQL database (postgresql://user@host:port/db,
                                 no password: libpq reads PGPASSFILE, ~/.pgpass); default $QWEN_STATE_URL,
                                 else the database the folder's gateway uses (its gateway-store.json: said on
                                 stderr); '' reads the folder's own ledger

Token counts are the usage Qwen reported ("cached": read from its cache, "cache write": stored in its explicit
cache; "cache saved": USD its caches took off the prompts' price); "errors" counts requests answered with an error status or
whose stream ended with an error; "unpriced" the answers nothing priced (docs/keys.md#unpriced-models): a USD sum
that includes them is "unknown", and a line names their models; "usage unknown" the answers Qwen reported no usage
for (missing or cut): a token or USD sum that includes them is "unknown", and a line names their models. Requests the gateway refused itself (no usable
account, bad JSON, unknown URL, …) are rows too; successful local answers (/v1/models, /health, /metrics, /auth/*) are
listed by `requests` but not summed in the other views.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from ..settings.auth import resolve_state_dir
from ..observe.ledger import FILENAME, Ledger, SharedLedger
from . import usage_batches, usage_conversations, usage_learned, usage_report, usage_store, usage_unpriced
from .usage_args import parse_since, positive as _positive, status as _status
from .usage_text import request_table, table
from .pipes import quiet_when_stdout_closes

# The Qwen model that answered; for requests that never reached Qwen (context guard), the model asked for.
_MODEL = "COALESCE(NULLIF(upstream_model, ''), model)"
VIEWS = {  # view -> (key column expressions, as named in the output)
    "today": (("account", "account"), (_MODEL, "model")),
    "days": (("day", "day"),),
    "accounts": (("account", "account"),),
    "models": ((_MODEL, "model"),),
}
# cached: read from Qwen's cache; cache write: stored in its explicit cache; cache saved: USD the caches took
# off the prompts' price (hits at 10% or 20% of the input price, less the 25% more that writes cost)
SUMS = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens", "cache_saved_usd",
        "errors", "unpriced", "usage_unknown")
# --by key: the key's refusals, and what its answers cost (USD; a Coding Plan's requests, a Token Plan's tokens;
# unpriced: answers nothing priced, which make its USD sums unknown)
KEY_SUMS = ("requests", "refused", "prompt_tokens", "completion_tokens", "cost_usd", "cache_saved_usd",
            "plan_requests", "plan_tokens", "unpriced", "usage_unknown")
USD_SUMS = ("cost_usd", "cache_saved_usd")
HEADS = {"cost_usd": "cost", "cache_saved_usd": "cache saved", "plan_requests": "plan requests",
         "plan_tokens": "plan tokens"}
_SAVED = "SUM(COALESCE(cache_saved, 0))"
_KEY_SQL = ("COUNT(*)", "SUM(CASE WHEN (error IN ('invalid_api_key', 'rate_limit_exceeded', 'insufficient_quota') "
            "AND account IS NULL) OR error = 'model_unpriced' THEN 1 ELSE 0 END)", "SUM(COALESCE(prompt_tokens, 0))",
            "SUM(COALESCE(completion_tokens, 0))", "SUM(CASE WHEN cost_unit = 'USD' THEN cost ELSE 0 END)", _SAVED,
            "SUM(CASE WHEN cost_unit = 'requests' THEN cost ELSE 0 END)",
            "SUM(CASE WHEN cost_unit = 'tokens' THEN cost ELSE 0 END)", usage_unpriced.COUNT, usage_unpriced.NO_USAGE)
_FAILED = "(status IS NULL OR status >= 400 OR error IS NOT NULL)"
# Local answers that spend nothing: listed, not summed (unless they failed).
SERVICE_ROUTES = ("models", "health", "metrics", "auth")
_USAGE_ONLY = (f"NOT (COALESCE(endpoint, '') IN ({', '.join(repr(r) for r in SERVICE_ROUTES)}) "
               f"AND status IS NOT NULL AND status < 400)")
REQUEST_COLUMNS = ("ts", "endpoint", "method", "path", "model", "upstream_model", "account", "status", "error",
                   "prompt_tokens", "completion_tokens", "cached_tokens", "est_tokens", "token_method", "ttfb_ms",
                   "duration_ms", "stream", "retries", "cost_unit", "cuts")


class Filters:
    """The command line's filters as one SQL condition."""

    def __init__(self, since: float | None = None, errors: bool = False, status: str | None = None,
                 account: str | None = None, model: str | None = None, key: str | None = None) -> None:
        self.where: list[str] = []
        self.args: list = []
        if since is not None:
            self._add("ts >= ?", since)
        if errors:
            self._add(_FAILED)
        if status is not None:
            if status.endswith("xx"):
                low = int(status[0]) * 100
                self._add("status >= ? AND status < ?", low, low + 100)
            else:
                self._add("status = ?", int(status))
        if account is not None:
            self._add("account IS NULL" if account == "-" else "account = ?", *(() if account == "-" else (account,)))
        if model is not None:
            self._add("(model = ? OR upstream_model = ?)", model, model)
        if key is not None:
            self._add("key_name IS NULL" if key == "-" else "key_name = ?", *(() if key == "-" else (key,)))

    def _add(self, cond: str, *args) -> None:
        self.where.append(cond)
        self.args += args

    def sql(self, *extra: str) -> tuple[str, tuple]:
        conds = [*extra, *self.where]
        return (" AND ".join(f"({c})" for c in conds) if conds else "1=1"), tuple(self.args)


def report(ledger: Ledger | SharedLedger, view: str, filters: Filters | None = None, today: str | None = None) -> list[dict]:
    """Aggregated rows of one view, as dicts (keys, then SUMS)."""
    keys = VIEWS[view]
    filters = filters or Filters()
    extra = [_USAGE_ONLY]
    day_args: tuple = ()
    if view == "today":
        extra.append("day = ?")
        day_args = (today or time.strftime("%Y-%m-%d"),)
    where, args = filters.sql(*extra)
    cols = ", ".join(f"COALESCE({c}, '-')" for c, _ in keys)
    rows = ledger.query(
        f"SELECT {cols}, COUNT(*), SUM(COALESCE(prompt_tokens, 0)), SUM(COALESCE(completion_tokens, 0)), "
        f"SUM(COALESCE(cached_tokens, 0)), SUM(COALESCE(cache_write_tokens, 0)), {_SAVED}, "
        f"SUM(CASE WHEN {_FAILED} THEN 1 ELSE 0 END), {usage_unpriced.COUNT}, {usage_unpriced.NO_USAGE} FROM usage "
        f"WHERE {where} "
        f"GROUP BY {cols} ORDER BY {cols}",
        day_args + args)
    names = [name for _, name in keys] + list(SUMS)
    return [_dollars(dict(zip(names, r, strict=True))) for r in rows]


def _dollars(row: dict) -> dict:
    for k in USD_SUMS:
        if k in row:
            row[k] = round(float(row[k] or 0), 6)
    row["unpriced"], row["usage_unknown"] = int(row.get("unpriced") or 0), int(row.get("usage_unknown") or 0)
    return usage_unpriced.unknown(row, USD_SUMS)


def by_key(ledger: Ledger | SharedLedger, view: str, filters: Filters | None = None,
           today: str | None = None) -> list[dict]:
    """Per named client key (and per day with the `days` view; today only with `today`)."""
    keys: tuple[tuple[str, str], ...] = ((("day", "day"),) if view == "days" else ()) + (("key_name", "key"),)
    where, args = (filters or Filters()).sql(_USAGE_ONLY, *(["day = ?"] if view == "today" else []))
    day_args = (today or time.strftime("%Y-%m-%d"),) if view == "today" else ()
    cols = ", ".join(f"COALESCE({c}, '-')" for c, _ in keys)
    rows = ledger.query(f"SELECT {cols}, {', '.join(_KEY_SQL)} FROM usage WHERE {where} GROUP BY {cols} "
                        f"ORDER BY {cols}", day_args + args)
    names = [name for _, name in keys] + list(KEY_SUMS)
    out = [_dollars(dict(zip(names, r, strict=True))) for r in rows]
    for r in out:
        r["plan_requests"], r["plan_tokens"] = int(r["plan_requests"] or 0), int(r["plan_tokens"] or 0)
    return out


def recent(ledger: Ledger | SharedLedger, filters: Filters | None = None, limit: int = 20) -> list[dict]:
    """The newest `limit` requests matching the filters, oldest first (as a log reads)."""
    where, args = (filters or Filters()).sql()
    rows = ledger.query(f"SELECT {', '.join(REQUEST_COLUMNS)} FROM usage WHERE {where} ORDER BY ts DESC LIMIT ?",
                        args + (limit,))
    out = []
    for r in reversed(rows):
        raw = dict(zip(REQUEST_COLUMNS, r, strict=True))
        ts = raw.pop("ts")
        row = {"time": _local(ts) if isinstance(ts, (int, float)) else None, "ts": ts, **raw}
        row["stream"] = bool(row["stream"])
        out.append(row)
    return out


def _local(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


@quiet_when_stdout_closes
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if (rest := usage_learned.asked(argv)) is not None:  # not the ledger: options of its own
        return usage_learned.main(rest)
    if (rest := usage_batches.asked(argv)) is not None:  # the batch store: options of its own
        return usage_batches.main(rest)
    ap = argparse.ArgumentParser(prog="qwen-usage", description=__doc__.split("\n", 1)[0],
                                 epilog=__doc__.split("\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("view", nargs="?", default="today",  # learned and batches: their own options (`VIEW --help`)
                    choices=[*VIEWS, "requests", "conversations", "report", "learned", "batches"],
                    help="what to group by, `requests` to list them, `report` for an HTML page, `learned` and "
                         "`batches` (each has --help) (default: today)")
    ap.add_argument("--json", action="store_true", help="print rows as JSON")
    ap.add_argument("--since", type=parse_since, metavar="WHEN", help="only from then on")
    ap.add_argument("--errors", action="store_true", help="only requests that ended in an error")
    ap.add_argument("--status", type=_status, metavar="CODE", help="only this status or class (503, 5xx)")
    ap.add_argument("--account", metavar="NAME", help='only this account ("-": none)')
    ap.add_argument("--model", metavar="NAME", help="only this model (asked for, or Qwen's)")
    ap.add_argument("--key", metavar="NAME", help='only this named client key ("-": none)')
    ap.add_argument("--by", choices=["key"], help="group by named client key (with today or days)")
    ap.add_argument("--limit", type=_positive, metavar="N", help="requests, conversations: how many (default 20); report: "
                    "slowest requests listed (default 10)")
    ap.add_argument("-o", "--out", "--output", dest="out", metavar="FILE", help=f"report: the page to write (default {usage_report.DEFAULT_OUT} in the state folder)")
    ap.add_argument("--state-dir", metavar="DIR", help="the gateway's state folder")
    ap.add_argument("--state-url", metavar="URL", default=os.environ.get("QWEN_STATE_URL"),
                    help="the shared PostgreSQL database (default $QWEN_STATE_URL, else the one the folder's gateway "
                         "uses); '' the folder's own ledger")
    a = ap.parse_args(argv)
    if a.out is not None and a.view != "report":
        ap.error("--out is for report only")
    if a.view == "report" and a.json:
        ap.error("--json does not apply to report (it writes HTML)")
    if a.by and a.view not in ("today", "days"):
        ap.error("--by key goes with the today (default) or days view")
    state = resolve_state_dir(a.state_dir)
    path = state / FILENAME
    filters = Filters(since=a.since, errors=a.errors, status=a.status, account=a.account, model=a.model, key=a.key)
    url, followed = usage_store.database(state, a.state_url)
    if followed:
        print(followed, file=sys.stderr)
    ledger = usage_store.open_ledger(ap, url) if url else Ledger(path) if path.exists() else None
    convs: list[dict] = []  # report: its Conversations section
    unpriced: list[tuple[str, int]] = []  # an aggregated view's unpriced requests, by model
    unreported: list[tuple[str, int]] = []  # and its answers without Qwen's usage
    if ledger is not None:
        try:
            if a.view == "report":
                rows = usage_report.load(ledger, *filters.sql(_USAGE_ONLY))
                convs = usage_report.conversations(ledger, *filters.sql(_USAGE_ONLY))
            elif a.view == "requests":
                rows = recent(ledger, filters, a.limit or 20)
            elif a.view == "conversations":
                rows = usage_conversations.conversations(ledger, *filters.sql(), a.limit or 20)
            else:
                rows = by_key(ledger, a.view, filters) if a.by else report(ledger, a.view, filters=filters)
                day = ["day = ?"] if a.view == "today" else []
                where, args = filters.sql(_USAGE_ONLY, *day)
                day_args = ((time.strftime("%Y-%m-%d"),) if day else ()) + args
                unpriced = usage_unpriced.models(ledger, where, day_args)
                unreported = usage_unpriced.models(ledger, where, day_args, usage_unpriced.USAGE_UNKNOWN)
        finally:
            ledger.close()
    else:
        rows = []
        if a.view == "report":  # nothing to draw: no file (an old report is left as it is)
            print(f"qwen-usage: no ledger at {path} yet (the gateway writes it on its first request): no report "
                  "written", file=sys.stderr)
            return 1
        if not a.json:
            print(f"qwen-usage: no ledger at {path} yet (the gateway writes it on its first request)",
                  file=sys.stderr)
    if a.view == "report":
        out, replaced = usage_report.write(rows, a, folder=state, convs=convs)
        print(f"{out} (it replaced the previous report)" if replaced else out)
    elif a.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        print(request_table(rows) if a.view == "requests" else usage_conversations.table(rows)
              if a.view == "conversations" else table(rows, KEY_SUMS if a.by else SUMS, HEADS, USD_SUMS))
        for said in (usage_unpriced.line(unpriced), usage_unpriced.line(unreported, usage_unpriced.USAGE_UNKNOWN)):
            if rows and said:
                print(said)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
