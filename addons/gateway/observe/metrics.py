"""Prometheus metrics of the gateway. `Metrics` owns its registry (not prometheus_client's global one),
counts every exchange in `finished`, and renders the text the gateway serves at `GET /metrics`:

    metrics.exposition(pool) -> bytes      (Content-Type: metrics.content_type)

The accounts' gauges (cooldown, usable, state, requests today) are read from `pool.status()` — the rows
/health shows — when Prometheus scrapes, never on a request's path.
"""

from __future__ import annotations

import calendar
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from ..exchange import RetryReason
from ..observer import Observer, cache_write_tokens, cached_tokens, endpoint_name, error_code, failed, label, status_of, usage_int

if TYPE_CHECKING:
    from mitmproxy import http

    from ..accounts import Pool
    from ..config import Config
    from ..exchange import Exchange

log = logging.getLogger("qwen")

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
TTFB_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)
MAX_CHILDREN = 4096  # label sets cached before the cache starts over
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


class Metrics(Observer):
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.enabled = True
        self.registry = r = CollectorRegistry()
        self.requests = Counter("qwen_requests", "Requests answered by the gateway, local answers included "
                                "(endpoint: the endpoint, or the route of a local answer: models, health, "
                                "metrics, auth, stored_response, unknown; key: the named client key's name, "
                                "empty without one)",
                                ["endpoint", "model", "upstream_model", "account", "status", "key"], registry=r)
        self.tokens = Counter("qwen_tokens", "Tokens reported by Qwen (kind: prompt, completion, cached: read from "
                              "its explicit or implicit cache, cache_write: stored in its explicit cache)",
                              ["kind", "model", "account", "key"], registry=r)
        self.cost = Counter("qwen_cost_usd", "What answers cost in USD (pay-as-you-go accounts, from the price "
                            "table: docs/keys.md)", ["model", "account", "key"], registry=r)
        # a gauge: a cache write costs more than the prompt without it, so the sum may go down
        self.cache_saved = Gauge("qwen_cache_saved_usd", "What Qwen's caches took off the prompts' price in USD "
                                 "since the gateway started (pay-as-you-go accounts: hits at 10% or 20% of the input "
                                 "price, less the 25% more that writes cost)", ["model", "account", "key"], registry=r)
        self.plan_units = Counter("qwen_plan_units", "What answers used of a plan's window (Coding Plan: "
                                  "requests, Token Plan: tokens)", ["account", "unit", "key"], registry=r)
        self.duration = Histogram("qwen_request_duration_seconds", "API requests: from the client's request to "
                                  "the end of the answer (upstream latency, retries included)", ["endpoint", "model"],
                                  buckets=LATENCY_BUCKETS, registry=r)
        self.ttfb = Histogram("qwen_time_to_first_byte_seconds", "Streams: from the client's request to the "
                              "first byte sent back", ["endpoint", "model"], buckets=TTFB_BUCKETS, registry=r)
        self.retries = Counter("qwen_retries", "Requests the gateway sent to Qwen again, by reason (" +
                               ", ".join(r.value for r in RetryReason) + ")", ["reason"], registry=r)
        self.rotations = Counter("qwen_account_rotations", "Switches to another account after a quota error",
                                 registry=r)
        self.errors = Counter("qwen_errors", "Exchanges that ended in an error, by its code (a stream that "
                              "broke after its 200 went out: its error's code, else stream_error)",
                              ["endpoint", "account", "code"], registry=r)
        self.streams = Gauge("qwen_streams_in_flight", "Streams being relayed now", registry=r)
        self.accounts = AccountGauges()
        r.register(self.accounts)
        self._streaming: set[str] = set()  # exchange ids between stream_started and finished
        # metric.labels(...) checks and looks up its labels on every call: each child is looked up once
        self._children: dict[tuple, Any] = {}
        for reason in RetryReason:  # a series born at its first increment hides it from rate() and increase()
            self._child(self.retries, reason.value)

    def _child(self, metric, *labels: str):
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            if len(self._children) >= MAX_CHILDREN:  # label values come from clients (model names)
                self._children.clear()
            child = self._children[key] = metric.labels(*labels)
        return child

    def exposition(self, pool: Pool | None = None) -> bytes:
        """The scrape's text; the accounts' gauges from `pool` (none without one)."""
        self.accounts.pool = pool
        try:
            return generate_latest(self.registry)
        finally:
            self.accounts.pool = None

    def configure(self, config: Config) -> None:
        self.enabled = config.metrics

    def stream_started(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        if self.enabled and ex.id not in self._streaming:
            self._streaming.add(ex.id)
            self.streams.inc()

    def finished(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        if ex.id in self._streaming:  # also when recording was switched off meanwhile: the gauge returns to 0
            self._streaming.discard(ex.id)
            self.streams.dec()
        if self.enabled:
            self.record(ex)

    def record(self, ex: Exchange) -> None:
        model = ex.requested_model if isinstance(ex.requested_model, str) else ""
        upstream, account, key = ex.upstream_model or "", ex.account or "", ex.key_name  # names: bounded labels
        status = status_of(ex)
        self._child(self.requests, label(ex), model, upstream, account, str(status) if status else "error", key).inc()
        if failed(ex):
            code = error_code(ex) or _stream_code(ex) or (f"http_{status}" if status else "error")
            self._child(self.errors, label(ex), account, code).inc()
        for retry in ex.retries:
            self._child(self.retries, retry.reason.value).inc()
            if retry.reason is RetryReason.ROTATED:
                self.rotations.inc()
        endpoint = endpoint_name(ex)
        if endpoint is None:
            return  # a local answer (models, health, …): no model, no tokens, no latency worth a histogram
        billed = upstream or model
        usage = ex.usage
        for kind, value in (("prompt", usage_int(usage, "prompt_tokens")),
                            ("completion", usage_int(usage, "completion_tokens")), ("cached", cached_tokens(usage)),
                            ("cache_write", cache_write_tokens(usage))):
            if value is not None and value > 0:
                self._child(self.tokens, kind, billed, account, key).inc(value)
        if ex.cache_saved:
            self._child(self.cache_saved, billed, account, key).inc(ex.cache_saved)
        if ex.cost:
            if ex.cost_unit == "USD":
                self._child(self.cost, billed, account, key).inc(ex.cost)
            else:
                self._child(self.plan_units, account, ex.cost_unit, key).inc(ex.cost)
        self._child(self.duration, endpoint, billed).observe(ex.duration_ms / 1000)
        if ex.ttfb_ms is not None:
            self._child(self.ttfb, endpoint, billed).observe(ex.ttfb_ms / 1000)


def _stream_code(ex: Exchange) -> str | None:
    """A stream that failed after its status went out: the code of the error event the client got."""
    if not ex.stream_error:
        return None
    err = ex.rewriter.error if ex.rewriter is not None else None
    code = err.get("code") if isinstance(err, dict) else None
    return str(code) if code else "stream_error"
