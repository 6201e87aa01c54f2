"""Prometheus metrics of the gateway. `Metrics` owns its registry (not prometheus_client's global one),
counts every exchange in `finished`, and renders the text the gateway serves at `GET /metrics`:

    metrics.exposition(pool) -> bytes      (Content-Type: metrics.content_type)

A request only adds to plain numbers: dicts keyed by a metric's name and label values (prometheus_client's
metrics take a lock and several calls per increment). `Metrics` is also the registry's collector: a scrape
turns the numbers into the families (names, help, labels, types, `_created` samples) that prometheus_client's
Counter, Gauge and Histogram rendered. Recording and scrapes both run on the event loop's thread: no locks.

The accounts' gauges (cooldown, usable, state, requests today) are read from `pool.status()` — the rows
/health shows — when Prometheus scrapes, never on a request's path.
"""

from __future__ import annotations

import logging
import math
import time
from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from ..cache_usage import read as read_cache
from ..exchange import RetryReason
from .gauges import AccountGauges, LearnedGauges
from ..pricing.prices import COST_UNKNOWN
from ..observer import (Observer, endpoint_name, error_code, failed, label, own_api,
                        status_of, usage_int)
from ..turn import outcome

if TYPE_CHECKING:
    from mitmproxy import http

    from ..accounts import Pool
    from ..models.learned import LearnedFacts
    from ..settings.config import Config
    from ..exchange import Exchange

log = logging.getLogger("qwen")

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, math.inf)
TTFB_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, math.inf)
MAX_SERIES = 4096  # label sets kept (label values come from clients: model names) before every series starts over
ROTATIONS, STREAMS = ("qwen_account_rotations",), "qwen_streams_in_flight"

# name: (type, help, label names), in the exposition's order
FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "qwen_requests": ("counter", "Requests answered by the gateway, local answers included (endpoint: the endpoint, "
                      "or the route of a local answer: models, health, metrics, auth, stored_response, unknown; key: "
                      "the named client key's name, empty without one)",
                      ("endpoint", "model", "upstream_model", "account", "status", "key")),
    "qwen_tokens": ("counter", "Tokens reported by Qwen (kind: prompt, completion, cached: read from its explicit or "
                    "implicit cache, cache_write: stored in its explicit cache)", ("kind", "model", "account", "key")),
    "qwen_cost_usd": ("counter", "What answers cost in USD (pay-as-you-go accounts, from the price table: "
                      "docs/keys.md)", ("model", "account", "key")),
    # a gauge: a cache write costs more than the prompt without it, so the sum may go down
    "qwen_cache_saved_usd": ("gauge", "What Qwen's caches took off the prompts' price in USD since the gateway "
                             "started (pay-as-you-go accounts: hits at 10% or 20% of the input price, less the 25% "
                             "more that writes cost)", ("model", "account", "key")),
    "qwen_cache_read_share": ("gauge", "Share of prompt tokens Qwen read from its cache since the gateway started "
                              "(cached / prompt tokens)", ("model", "account", "key")),
    "qwen_cache_misses": ("counter", "Turns of a conversation that missed more of Qwen's cache than the turn before, "
                          "by cause (the cache doctor: docs/observability.md)", ("cause", "model", "account", "key")),
    "qwen_cache_miss_tokens": ("counter", "Prompt tokens those turns lost: the turn before's cache should have served "
                               "them", ("cause", "model", "account", "key")),
    "qwen_unpriced_requests": ("counter", "Answers whose model has no price on their account's billing, or whose usage "
                               "Qwen did not report (nothing in qwen_cost_usd for them: their cost is unknown; "
                               "docs/keys.md)", ("model", "account", "key")),
    "qwen_plan_units": ("counter", "What answers used of a plan's window (Coding Plan: requests, Token Plan: "
                        "tokens)", ("account", "unit", "key")),
    "qwen_request_duration_seconds": ("histogram", "API requests: from the client's request to the end of the "
                                      "answer (upstream latency, retries included)", ("endpoint", "model")),
    "qwen_time_to_first_byte_seconds": ("histogram", "Streams: from the client's request to the first byte sent "
                                        "back", ("endpoint", "model")),
    "qwen_retries": ("counter", "Requests the gateway sent to Qwen again, by reason (" +
                     ", ".join(r.value for r in RetryReason) + ")", ("reason",)),
    "qwen_account_rotations": ("counter", "Switches to another account after a quota error", ()),
    "qwen_stream_cuts": ("counter", "Answers whose stream from Qwen broke before its end (cut, ended early, silent), "
                         "by how the client's answer ended (continued: whole; error: the dialect's terminal error)",
                         ("endpoint", "ended")),
    "qwen_errors": ("counter", "Exchanges that ended in an error, by its code (a stream that broke after its 200 "
                    "went out: its error's code, else stream_error)", ("endpoint", "account", "code")),
    "qwen_native_requests": ("counter", "Requests an option sent to Qwen in their client's own API, not translated "
                             "(api: responses for qwen_responses_native, v1/messages for qwen_messages_passthrough)",
                             ("api", "account")),
    "qwen_cache_fixes": ("counter", "Requests qwen_cache_fixes changed, by fix (tool-order: the tools sorted by name)",
                         ("fix", "account")),
    STREAMS: ("gauge", "Streams being relayed now", ()),
}
BUCKETS = {"qwen_request_duration_seconds": LATENCY_BUCKETS, "qwen_time_to_first_byte_seconds": TTFB_BUCKETS}
LE = {name: [floatToGoString(b) for b in bounds] for name, bounds in BUCKETS.items()}  # the `le` label values
KINDS = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily, "histogram": HistogramMetricFamily}


class Metrics(Observer):
    content_type = CONTENT_TYPE_LATEST
    counts_bills = True  # a batch's bill: its tokens and cost counted

    def __init__(self) -> None:
        self.enabled = True
        self.streams = 0  # streams between stream_started and finished
        self._streaming: set[str] = set()  # their exchange ids
        self._sums: dict[tuple, float] = {}  # (name, *label values): a counter's or gauge's value
        self._hists: dict[tuple, list[float]] = {}  # (name, *label values): count per bucket, then the sum
        self._created: dict[tuple, float] = {}  # either's key: when it was first seen (its `_created` sample)
        self._start()
        self.registry = CollectorRegistry()
        self.registry.register(self)
        self.accounts = AccountGauges()
        self.registry.register(self.accounts)
        self.knowledge = LearnedGauges()
        self.registry.register(self.knowledge)

    def _start(self) -> None:
        """A series born at its first increment hides it from rate() and increase(): the retry reasons and the
        rotations are known in advance, so their series exist from the start at 0."""
        for key in (*(("qwen_retries", r.value) for r in RetryReason), ROTATIONS):
            self._add(key, 0)

    def _add(self, key: tuple, amount: float = 1) -> None:
        try:
            self._sums[key] += amount
        except KeyError:
            self._first_seen(key)
            self._sums[key] = amount

    def _observe(self, key: tuple, value: float) -> None:
        """Prometheus buckets are `le`: a value on a bound counts in that bound's bucket (the last is +Inf)."""
        bounds = BUCKETS[key[0]]
        counts = self._hists.get(key)
        if counts is None:
            self._first_seen(key)
            counts = self._hists[key] = [0] * (len(bounds) + 1)
        counts[bisect_left(bounds, value)] += 1
        counts[-1] += value

    def _first_seen(self, key: tuple) -> None:
        # Label values come from clients (model names). Dropping only some series would leave totals that silently
        # miss counts: past MAX_SERIES label sets every series starts over instead, as after a restart (the new
        # `_created` times tell Prometheus the counters were reset), and memory stays bounded.
        if len(self._created) >= MAX_SERIES:
            self._sums.clear()
            self._hists.clear()
            self._created.clear()
            self._start()
        self._created[key] = time.time()

    def describe(self) -> list[Metric]:
        return []  # the registry needs no names to check: the families are all this collector's

    def collect(self) -> Iterator[Metric]:
        families = {name: KINDS[kind](name, doc, labels=labels) for name, (kind, doc, labels) in FAMILIES.items()}
        for key, value in self._sums.items():
            family = families[key[0]]
            if family.type == "counter":
                family.add_metric(key[1:], value, created=self._created[key])
            else:
                family.add_metric(key[1:], value)
        for key, counts in self._hists.items():
            name, values = key[0], key[1:]
            families[name].add_metric(values, list(zip(LE[name], accumulate(counts[:-1]))), counts[-1])
            labels = dict(zip(FAMILIES[name][2], values))
            families[name].add_sample(name + "_created", labels, self._created[key])  # add_metric has no created=
        families[STREAMS].add_metric([], self.streams)
        for key, value in self._sums.items():  # the cache read share, from the token counters
            if key[:2] == ("qwen_tokens", "prompt") and value:
                read = self._sums.get(("qwen_tokens", "cached", *key[2:]), 0)
                families["qwen_cache_read_share"].add_metric(key[2:], round(read / value, 4))
        yield from families.values()

    def exposition(self, pool: Pool | None = None, learned: LearnedFacts | None = None) -> bytes:
        """The scrape's text; the accounts' gauges from `pool`, the learned facts from `learned` (none without)."""
        self.accounts.pool, self.knowledge.learned = pool, learned
        try:
            return generate_latest(self.registry)
        finally:
            self.accounts.pool, self.knowledge.learned = None, None

    def configure(self, config: Config) -> None:
        self.enabled = config.metrics

    def stream_started(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        if self.enabled and ex.id not in self._streaming:
            self._streaming.add(ex.id)
            self.streams += 1

    def finished(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        if ex.id in self._streaming:  # also when recording was switched off meanwhile: the gauge returns to 0
            self._streaming.discard(ex.id)
            self.streams -= 1
        if self.enabled:
            self.record(ex)

    def record(self, ex: Exchange) -> None:
        model = ex.requested_model if isinstance(ex.requested_model, str) else ""
        upstream, account, key = ex.attempt.model or "", ex.account or "", ex.key.name  # names: bounded labels
        status = status_of(ex)
        self._add(("qwen_requests", label(ex), model, upstream, account, str(status) if status else "error", key))
        if failed(ex):
            code = error_code(ex) or _stream_code(ex) or (f"http_{status}" if status else "error")
            self._add(("qwen_errors", label(ex), account, code))
        if api := own_api(ex):
            self._add(("qwen_native_requests", api, account))
        for fix in ex.fixed:
            self._add(("qwen_cache_fixes", fix, account))
        if ex.result.cuts:
            self._add(("qwen_stream_cuts", label(ex), "error" if ex.result.stream_error else "continued"))
        for retry in ex.attempt.retries:
            self._add(("qwen_retries", retry.reason.value))
            if retry.reason is RetryReason.ROTATED:
                self._add(ROTATIONS)
        endpoint = endpoint_name(ex)
        if endpoint is None:
            return  # a local answer (models, health, …): no model, no tokens, no latency worth a histogram
        billed = upstream or model
        usage = ex.result.usage
        cached, written, _, _ = read_cache(usage)
        for kind, value in (("prompt", usage_int(usage, "prompt_tokens")),
                            ("completion", usage_int(usage, "completion_tokens")), ("cached", cached),
                            ("cache_write", written)):
            if value is not None and value > 0:
                self._add(("qwen_tokens", kind, billed, account, key), value)
        if ex.result.cache_saved:
            self._add(("qwen_cache_saved_usd", billed, account, key), ex.result.cache_saved)
        cache = ex.result.cache
        if cache is not None and cache.cause is not None:
            self._add(("qwen_cache_misses", cache.cause, billed, account, key))
            self._add(("qwen_cache_miss_tokens", cache.cause, billed, account, key), cache.lost)
        if ex.result.cost_unit in COST_UNKNOWN:  # no price, or no usage to price: unknown, never $0
            self._add(("qwen_unpriced_requests", billed, account, key))
        elif ex.result.cost:
            if ex.result.cost_unit == "USD":
                self._add(("qwen_cost_usd", billed, account, key), ex.result.cost)
            else:
                self._add(("qwen_plan_units", account, ex.result.cost_unit, key), ex.result.cost)
        self._observe(("qwen_request_duration_seconds", endpoint, billed), ex.duration_ms / 1000)
        if ex.ttfb_ms is not None:
            self._observe(("qwen_time_to_first_byte_seconds", endpoint, billed), ex.ttfb_ms / 1000)


def _stream_code(ex: Exchange) -> str | None:
    """A stream that failed after its status went out: the code of the error event the client got."""
    if not ex.result.stream_error:
        return None
    return outcome.stream_error_code(ex) or "stream_error"
