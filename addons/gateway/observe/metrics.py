"""Prometheus metrics of the gateway, served at `GET /metrics` by the proxy itself.

Two addons share one `GatewayMetrics` (its own CollectorRegistry, not prometheus_client's global one):
`MetricsEndpoint` sits before the gateway and answers `GET /metrics` (the gateway then leaves the flow
alone); `MetricsRecorder` sits after it and counts each exchange from the gateway's final record.
"""

from __future__ import annotations

import functools

from mitmproxy import ctx, http
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .common import cached_tokens, claims, gateway_record, option, status_of

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
TTFB_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)
# What a note in the gateway's record says about a retry (see QwenGateway._recover).
RETRY_REASONS = (("refreshed", "refreshed"), ("rotated", "rotated"), ("throttled", "throttled"))


class GatewayMetrics:
    """The metric families, in their own registry."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("qwen_requests", "Requests answered by the gateway",
                                ["endpoint", "model", "upstream_model", "account", "status"], registry=r)
        self.tokens = Counter("qwen_tokens", "Tokens reported by Qwen (kind: prompt, completion, cached)",
                              ["kind", "model", "account"], registry=r)
        self.duration = Histogram("qwen_request_duration_seconds", "From the client's request to the end of "
                                  "the answer (upstream latency, retries included)", ["endpoint", "model"],
                                  buckets=LATENCY_BUCKETS, registry=r)
        self.ttfb = Histogram("qwen_time_to_first_byte_seconds", "Streams: from the client's request to the "
                              "first byte sent back", ["endpoint", "model"], buckets=TTFB_BUCKETS, registry=r)
        self.retries = Counter("qwen_retries", "Requests the gateway sent again (reason: refreshed, rotated, "
                               "throttled, other)", ["reason"], registry=r)
        self.rotations = Counter("qwen_account_rotations", "Switches to another account after a quota error",
                                 registry=r)
        self.streams = Gauge("qwen_streams_in_flight", "Streams being relayed now", registry=r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


@functools.cache
def shared_metrics() -> GatewayMetrics:
    """One instance for addons constructed without an explicit GatewayMetrics."""
    return GatewayMetrics()


class MetricsEndpoint:
    """Before the gateway, in `request`: answers `GET /metrics` (any host in reverse mode; in other modes
    only for the gateway's qwen_intercept_hosts)."""

    def __init__(self, gateway=None, metrics: GatewayMetrics | None = None) -> None:
        self.gateway = gateway
        self.metrics = metrics or shared_metrics()
        self.enabled = True

    def load(self, loader) -> None:
        loader.add_option("qwen_metrics", bool, True, "Serve Prometheus metrics at GET /metrics on the gateway's "
                                                      "listener.")

    def configure(self, updated: set[str]) -> None:
        if "qwen_metrics" in updated:
            self.enabled = ctx.options.qwen_metrics

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live or not self.enabled:
            return
        if flow.request.method.upper() != "GET" or flow.request.path.split("?", 1)[0] != "/metrics":
            return
        if claims(flow, self.gateway):
            flow.response = http.Response.make(200, self.metrics.exposition(), {"content-type": CONTENT_TYPE_LATEST})


class MetricsRecorder:
    """After the gateway: streams in flight (`responseheaders` → `response`/`error`), and each finished
    exchange from the gateway's record."""

    def __init__(self, metrics: GatewayMetrics | None = None) -> None:
        self.m = metrics or shared_metrics()
        self.enabled = True
        self._streaming: set[str] = set()

    def configure(self, updated: set[str]) -> None:
        self.enabled = bool(option("qwen_metrics", True))

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        resp = flow.response
        if (self.enabled and resp is not None and "qwen" in flow.metadata and flow.id not in self._streaming
                and "event-stream" in resp.headers.get("content-type", "")):
            self._streaming.add(flow.id)
            self.m.streams.inc()

    def response(self, flow: http.HTTPFlow) -> None:
        self._done(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._done(flow)

    def _done(self, flow: http.HTTPFlow) -> None:
        if flow.id in self._streaming:
            self._streaming.discard(flow.id)
            self.m.streams.dec()
        meta = gateway_record(flow)
        if meta is None or not self.enabled:
            return
        self.record(meta)

    def record(self, meta: dict) -> None:
        m = self.m
        endpoint = str(meta.get("endpoint"))
        model = str(meta.get("model") or "")
        upstream = str(meta.get("upstream_model") or "")
        account = str(meta.get("account") or "")
        status = status_of(meta)
        m.requests.labels(endpoint, model, upstream, account, str(status) if status else "error").inc()
        usage = meta.get("usage") if isinstance(meta.get("usage"), dict) else {}
        billed = upstream or model
        for kind, value in (("prompt", usage.get("prompt_tokens")), ("completion", usage.get("completion_tokens")),
                            ("cached", cached_tokens(usage))):
            if isinstance(value, int) and value > 0:
                m.tokens.labels(kind, billed, account).inc(value)
        if isinstance(meta.get("duration_ms"), (int, float)):
            m.duration.labels(endpoint, billed).observe(meta["duration_ms"] / 1000)
        if isinstance(meta.get("ttfb_ms"), (int, float)):
            m.ttfb.labels(endpoint, billed).observe(meta["ttfb_ms"] / 1000)
        notes = [n for n in meta.get("notes") or () if isinstance(n, str)]
        retries = meta.get("retries") if isinstance(meta.get("retries"), int) else 0
        explained = 0  # the notes say why; a note whose retry never happened (no account left) is not counted
        for note in notes:
            reason = next((r for word, r in RETRY_REASONS if word in note), None)
            if reason is not None and explained < retries:
                m.retries.labels(reason).inc()
                explained += 1
                if reason == "rotated":
                    m.rotations.inc()
        if retries > explained:
            m.retries.labels("other").inc(retries - explained)
