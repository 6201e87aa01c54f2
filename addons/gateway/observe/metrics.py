"""Prometheus metrics of the gateway. `Metrics` owns its registry (not prometheus_client's global one),
counts every exchange in `finished`, and renders the text the gateway serves at `GET /metrics`:

    metrics.exposition() -> bytes          (Content-Type: metrics.content_type)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..exchange import RetryReason
from ..observer import Observer, cached_tokens, endpoint_name, label, status_of, usage_int

if TYPE_CHECKING:
    from mitmproxy import http

    from ..config import Config
    from ..exchange import Exchange

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
TTFB_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)
MAX_CHILDREN = 4096  # label sets cached before the cache starts over


class Metrics(Observer):
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.enabled = True
        self.registry = r = CollectorRegistry()
        self.requests = Counter("qwen_requests", "Requests answered by the gateway, local answers included "
                                "(endpoint: the endpoint, or the route of a local answer: models, health, "
                                "metrics, auth, stored_response, unknown)",
                                ["endpoint", "model", "upstream_model", "account", "status"], registry=r)
        self.tokens = Counter("qwen_tokens", "Tokens reported by Qwen (kind: prompt, completion, cached)",
                              ["kind", "model", "account"], registry=r)
        self.duration = Histogram("qwen_request_duration_seconds", "API requests: from the client's request to "
                                  "the end of the answer (upstream latency, retries included)", ["endpoint", "model"],
                                  buckets=LATENCY_BUCKETS, registry=r)
        self.ttfb = Histogram("qwen_time_to_first_byte_seconds", "Streams: from the client's request to the "
                              "first byte sent back", ["endpoint", "model"], buckets=TTFB_BUCKETS, registry=r)
        self.retries = Counter("qwen_retries", "Requests the gateway sent to Qwen again, by reason (" +
                               ", ".join(r.value for r in RetryReason) + ")", ["reason"], registry=r)
        self.rotations = Counter("qwen_account_rotations", "Switches to another account after a quota error",
                                 registry=r)
        self.streams = Gauge("qwen_streams_in_flight", "Streams being relayed now", registry=r)
        self._streaming: set[str] = set()  # exchange ids between stream_started and finished
        # metric.labels(...) checks and looks up its labels on every call: each child is looked up once
        self._children: dict[tuple, Any] = {}

    def _child(self, metric, *labels: str):
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            if len(self._children) >= MAX_CHILDREN:  # label values come from clients (model names)
                self._children.clear()
            child = self._children[key] = metric.labels(*labels)
        return child

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

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
        upstream, account = ex.upstream_model or "", ex.account or ""
        status = status_of(ex)
        self._child(self.requests, label(ex), model, upstream, account, str(status) if status else "error").inc()
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
                            ("completion", usage_int(usage, "completion_tokens")), ("cached", cached_tokens(usage))):
            if value is not None and value > 0:
                self._child(self.tokens, kind, billed, account).inc(value)
        self._child(self.duration, endpoint, billed).observe(ex.duration_ms / 1000)
        if ex.ttfb_ms is not None:
            self._child(self.ttfb, endpoint, billed).observe(ex.ttfb_ms / 1000)
