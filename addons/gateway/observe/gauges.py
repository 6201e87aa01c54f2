"""The gauges a scrape reads from the gateway's state rather than from the exchanges it counted (metrics.py):
the accounts' (from `pool.status()`, the rows /health shows) and what Qwen's refusals taught (models/learned.py).
Never on a request's path: each collector is handed its source just before a scrape and let go after."""

from __future__ import annotations

import calendar
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from ..accounts import Pool
    from ..models.learned import LearnedFacts

log = logging.getLogger("qwen")

USABLE_STATES = ("ok", "expired", "refreshing")  # an account the pool hands out (as /health counts them)


def _epoch(iso: str | None) -> float:
    """The pool's status rows give times as `YYYY-MM-DDTHH:MM:SSZ` (UTC, whole seconds)."""
    if not iso:
        return 0.0
    try:
        return float(calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")))
    except (TypeError, ValueError):
        return 0.0


class AccountGauges:
    """A collector: one scrape reads the pool's status rows once. Set `pool` before each collection (the
    scrape is answered on the event loop, so nothing else runs in between)."""

    def __init__(self) -> None:
        self.pool: Pool | None = None

    def describe(self) -> list[Metric]:
        return []  # registering must not read the pool

    def collect(self) -> Iterator[Metric]:
        rows = self._rows()
        now = time.time()
        cooldown = GaugeMetricFamily("qwen_account_cooldown_seconds", "Seconds until a cooling-down account "
                                     "(quota or throttling) is back; 0 when it is not cooling down", labels=["account"])
        usable = GaugeMetricFamily("qwen_account_usable", "1 when the pool can hand the account out now (state "
                                   "ok, expired or refreshing), else 0", labels=["account"])
        today = GaugeMetricFamily("qwen_account_requests_today", "Requests the pool counted for the account "
                                  "today (UTC day)", labels=["account"])
        state = GaugeMetricFamily("qwen_account_state", "1 per account, its kind and state as /health shows "
                                  "them (ok, expired, refreshing, cooling_down, needs_login, ...)",
                                  labels=["account", "kind", "state"])
        for r in rows:
            name = str(r.get("name") or "")
            if not name or r.get("kind") == "config":  # a broken accounts.json: not an account
                continue
            st = str(r.get("state") or "unknown")
            cooldown.add_metric([name], max(0.0, _epoch(r.get("cooldown_until")) - now))
            usable.add_metric([name], 1.0 if st in USABLE_STATES else 0.0)
            count = r.get("requests_today")
            today.add_metric([name], float(count) if isinstance(count, int) else 0.0)
            state.add_metric([name, str(r.get("kind") or ""), st], 1.0)
        yield from (cooldown, usable, today, state)

    def _rows(self) -> list[dict]:
        if self.pool is None:
            return []
        try:
            return self.pool.status()
        except Exception:  # a scrape never fails for the accounts: the request metrics still go out
            log.exception("qwen: metrics could not read the accounts' state")
            return []


class LearnedGauges:
    """A collector of what Qwen's refusals taught (models/learned.py): set `learned` before each collection."""

    def __init__(self) -> None:
        self.learned: LearnedFacts | None = None

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        facts = GaugeMetricFamily("qwen_learned_fact", "A fact Qwen's own refusal taught, while it holds (fact: "
                                  "output, budget, input; the value it bounds to)", labels=["model", "fact"])
        unknown = CounterMetricFamily("qwen_unknown_refusals", "Qwen's 400s in a wording the gateway does not know "
                                      "(said on the flow): what the next reader must learn", labels=["model"])
        if self.learned is not None:
            for f in self.learned.rows():
                if self.learned.get(f.model, f.fact) is not None:
                    facts.add_metric([f.model, f.fact], f.value)
            for model, count in self.learned.unknown.items():
                unknown.add_metric([model], count)
        yield from (facts, unknown)
