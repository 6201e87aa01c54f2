"""What `qwen-usage report` shows, summed from the ledger's rows.

The rows are read with one plain SELECT through `Ledger.query` (the condition of qwen-usage's filters,
`?` placeholders, no database-specific function) and summed here, in Python, so the report reads any
ledger the gateway can write to."""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol


DEFAULT_TOP = 10  # slowest requests listed, by duration and by time to first byte
COLUMNS = ("ts", "day", "endpoint", "model", "upstream_model", "account", "status", "error", "prompt_tokens",
           "completion_tokens", "cached_tokens", "ttfb_ms", "duration_ms", "key_name", "cost",
           "cost_unit", "cache_write_tokens", "cache_saved")  # what the page shows
# What the gateway refused a named key itself (no account was asked): counted as the key's refusals.
KEY_REFUSALS = ("invalid_api_key", "rate_limit_exceeded", "insufficient_quota")
UNPRICED_REFUSAL = "model_unpriced"  # refused a key's USD budget once the account was chosen: its refusal too

Row = dict[str, Any]


class Queryable(Protocol):
    def query(self, sql: str, args: tuple = ()) -> list[tuple]: ...


@dataclass
class Totals:
    requests: int = 0
    prompt: int = 0
    completion: int = 0
    cached: int = 0
    written: int = 0  # stored in Qwen's explicit cache
    saved: float = 0.0  # USD Qwen's caches took off the prompts' price
    errors: int = 0
    refused: int = 0
    usd: float = 0.0
    plan: Counter[str] = field(default_factory=Counter)  # a plan's own units: requests, tokens
    unpriced: int = 0  # answers nothing priced: the money above is then unknown (issue 59)
    unpriced_models: Counter[str] = field(default_factory=Counter)

    def add(self, r: Row) -> None:
        self.requests += 1
        self.prompt += r["prompt_tokens"] or 0
        self.completion += r["completion_tokens"] or 0
        self.cached += r["cached_tokens"] or 0
        self.written += r["cache_write_tokens"] or 0
        self.saved += r["cache_saved"] or 0.0
        self.errors += failed(r)
        self.refused += refused(r)
        if r["cost_unit"] == "unpriced":
            self.unpriced += 1
            self.unpriced_models[model_of(r)] += 1
        elif isinstance(r["cost"], (int, float)):
            if r["cost_unit"] == "USD":
                self.usd += r["cost"]
            elif r["cost_unit"]:
                self.plan[r["cost_unit"]] += int(r["cost"])

    @property
    def usd_known(self) -> bool:
        """Whether `usd` is what its requests cost (none of them unpriced)."""
        return not self.unpriced

    saved_known = usd_known  # what the caches saved on an unpriced request is unknown as well

    @property
    def tokens(self) -> int:
        return self.prompt + self.completion

    @property
    def rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass
class Summary:
    """Everything the page shows, summed from the rows."""

    days: list[str] = field(default_factory=list)
    total: Totals = field(default_factory=Totals)
    by_model: dict[tuple[str, str], Totals] = field(default_factory=lambda: defaultdict(Totals))  # (day, model)
    by_account: dict[tuple[str, str], Totals] = field(default_factory=lambda: defaultdict(Totals))
    by_key: dict[tuple[str, str], Totals] = field(default_factory=lambda: defaultdict(Totals))  # named client keys
    per_day: dict[str, Totals] = field(default_factory=lambda: defaultdict(Totals))
    per_endpoint: dict[str, Totals] = field(default_factory=lambda: defaultdict(Totals))
    codes_by_day: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    codes_by_endpoint: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    slowest: list[Row] = field(default_factory=list)  # by duration
    first_byte: list[Row] = field(default_factory=list)  # by time to first byte
    first_ts: float | None = None
    last_ts: float | None = None


def failed(r: Row) -> bool:
    """As the other views count errors: an error status, no status, or a stream that ended in an error."""
    return r["status"] is None or r["status"] >= 400 or r["error"] is not None


def refused(r: Row) -> bool:
    """A request the gateway refused a client key itself (unknown, revoked, over a limit or budget)."""
    return (r["error"] in KEY_REFUSALS and not r["account"]) or r["error"] == UNPRICED_REFUSAL


def model_of(r: Row) -> str:
    """The Qwen model that answered; the one asked for when none did (as `qwen-usage models`)."""
    return r["upstream_model"] or r["model"] or "-"


def error_of(r: Row) -> str:
    return r["error"] or (f"status {r['status']}" if r["status"] is not None else "no answer")


def load(ledger: Queryable, where: str, args: tuple) -> list[Row]:
    """The rows matching `where` (qwen-usage's filters: the rows its other views sum)."""
    rows = ledger.query(f"SELECT {', '.join(COLUMNS)} FROM usage WHERE {where}", args)
    return [dict(zip(COLUMNS, r, strict=True)) for r in rows]


def summarize(rows: list[Row], top: int = DEFAULT_TOP) -> Summary:
    s = Summary()
    for r in rows:
        day, endpoint = r["day"] or "-", r["endpoint"] or "-"
        s.total.add(r)
        s.by_model[day, model_of(r)].add(r)
        s.by_account[day, r["account"] or "-"].add(r)
        s.by_key[day, r["key_name"] or "-"].add(r)
        s.per_day[day].add(r)
        s.per_endpoint[endpoint].add(r)
        if failed(r):
            s.codes_by_day[day][error_of(r)] += 1
            s.codes_by_endpoint[endpoint][error_of(r)] += 1
        if isinstance(r["ts"], (int, float)):
            s.first_ts = r["ts"] if s.first_ts is None else min(s.first_ts, r["ts"])
            s.last_ts = r["ts"] if s.last_ts is None else max(s.last_ts, r["ts"])
    s.days = sorted(s.per_day)
    s.slowest = _top(rows, "duration_ms", top)
    s.first_byte = _top(rows, "ttfb_ms", top)
    return s


def _top(rows: list[Row], column: str, n: int) -> list[Row]:
    """The n largest by column (rows without it left out); ties oldest first."""
    timed = [r for r in rows if isinstance(r[column], (int, float))]
    return heapq.nsmallest(n, timed, key=lambda r: (-r[column], r["ts"] or 0))
