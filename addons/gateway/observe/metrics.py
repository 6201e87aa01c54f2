"""Prometheus metrics at GET /metrics, from the gateway's record of each exchange."""

from __future__ import annotations

from mitmproxy import ctx, http
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("qwen_requests", "Gateway requests", ["endpoint", "model", "account", "status"],
                                registry=r)
        self.tokens = Counter("qwen_tokens", "Tokens reported by Qwen", ["kind", "model", "account"], registry=r)
        self.latency = Histogram("qwen_request_duration_seconds", "Request to end of answer",
                                 ["endpoint", "model"], buckets=LATENCY_BUCKETS, registry=r)
        self.ttfb = Histogram("qwen_time_to_first_byte_seconds", "Stream time to first byte", ["endpoint", "model"],
                              buckets=LATENCY_BUCKETS, registry=r)
        self.retries = Counter("qwen_retries", "Requests re-sent by the gateway", ["reason"], registry=r)
        self.streams = Gauge("qwen_streams_in_flight", "Streams being relayed now", registry=r)


class MetricsEndpoint:
    """Before the gateway: answers GET /metrics itself."""

    def __init__(self, gateway, metrics: GatewayMetrics) -> None:
        self.gateway = gateway
        self.metrics = metrics

    def load(self, loader) -> None:
        loader.add_option("qwen_metrics", bool, True, "Serve Prometheus metrics at GET /metrics.")

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live or not ctx.options.qwen_metrics:
            return
        if flow.request.method == "GET" and flow.request.path.split("?")[0] == "/metrics" and self.gateway.claims(flow):
            flow.response = http.Response.make(200, generate_latest(self.metrics.registry),
                                               {"content-type": CONTENT_TYPE_LATEST})


class MetricsRecorder:
    """After the gateway: counts each finished exchange."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.m = metrics
        self._streaming: set[str] = set()

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None and callable(flow.response.stream) and "qwen" in flow.metadata:
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
        meta = flow.metadata.get("qwen")
        if not (isinstance(meta, dict) and meta.get("endpoint")):
            return
        ep, model, acct = meta["endpoint"], meta.get("model") or "", meta.get("account") or ""
        status = str(meta.get("status") or (meta.get("error") or {}).get("status") or "error")
        self.m.requests.labels(ep, model, acct, status).inc()
        usage = meta.get("usage") or {}
        for kind, value in (("prompt", usage.get("prompt_tokens")), ("completion", usage.get("completion_tokens")),
                            ("cached", (usage.get("prompt_tokens_details") or {}).get("cached_tokens"))):
            if isinstance(value, int) and value:
                self.m.tokens.labels(kind, model, acct).inc(value)
        if meta.get("duration_ms") is not None:
            self.m.latency.labels(ep, model).observe(meta["duration_ms"] / 1000)
        if meta.get("ttfb_ms") is not None:
            self.m.ttfb.labels(ep, model).observe(meta["ttfb_ms"] / 1000)
        for note in meta.get("notes") or []:
            for reason in ("refreshed", "rotated", "throttled"):
                if reason in note:
                    self.m.retries.labels(reason).inc()
