"""Prometheus metrics: MetricsEndpoint (GET /metrics, before the gateway) and MetricsRecorder (after it)."""

from __future__ import annotations

from mitmproxy import http
from mitmproxy.test import taddons, tflow
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from qwen_gateway.addon import QwenGateway
from qwen_gateway.observe.metrics import GatewayMetrics, MetricsEndpoint, MetricsRecorder, shared_metrics
from helpers.observe_testlib import GatewayOptions, client_flow, record


def scrape(flow: http.HTTPFlow) -> dict[tuple, float]:
    assert flow.response.status_code == 200
    assert flow.response.headers["content-type"].startswith("text/plain; version=")
    out = {}
    for fam in text_string_to_metric_families(flow.response.get_text()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def get_metrics(host="api.openai.com", reverse=True, path="/metrics", method="GET") -> http.HTTPFlow:
    return client_flow(None, method=method, path=path, host=host, reverse=reverse)


async def test_endpoint_answers_get_metrics_in_reverse_mode_for_any_host():
    m = GatewayMetrics()
    ep = MetricsEndpoint(None, m)
    with taddons.context(GatewayOptions(), ep):
        for host in ("127.0.0.1", "example.com"):
            f = get_metrics(host=host)
            ep.request(f)
            s = scrape(f)  # nothing recorded yet: only the label-less series, at zero
            assert {k[0]: v for k, v in s.items() if not k[0].endswith("_created")} == {
                "qwen_account_rotations_total": 0, "qwen_streams_in_flight": 0}
        f = get_metrics(path="/metrics?x=1")
        ep.request(f)
        assert f.response.status_code == 200


async def test_endpoint_in_regular_mode_only_for_intercepted_hosts():
    ep = MetricsEndpoint(None, GatewayMetrics())
    opts = GatewayOptions()
    with taddons.context(opts, ep) as tctx:
        f = get_metrics(host="api.openai.com", reverse=False)
        ep.request(f)
        assert f.response is not None
        f = get_metrics(host="example.com", reverse=False)
        ep.request(f)
        assert f.response is None  # someone else's /metrics: passes through untouched
        tctx.configure(opts, qwen_intercept_hosts=["api.example.org"])
        f = get_metrics(host="api.example.org", reverse=False)
        ep.request(f)
        assert f.response is not None


async def test_endpoint_uses_the_gateways_own_rule():
    gw = QwenGateway(pool=object())
    ep = MetricsEndpoint(gw, GatewayMetrics())
    with taddons.context(gw, ep) as tctx:
        tctx.configure(gw, qwen_intercept_hosts=["api.openai.com"])
        f = get_metrics(reverse=False)
        ep.request(f)
        assert f.response is not None
        f = get_metrics(host="other.example", reverse=False)
        ep.request(f)
        assert f.response is None


async def test_endpoint_leaves_other_requests_and_can_be_switched_off():
    ep = MetricsEndpoint(None, GatewayMetrics())
    with taddons.context(GatewayOptions(), ep) as tctx:
        for f in (get_metrics(method="POST"), get_metrics(path="/v1/metrics"), get_metrics(path="/metricsx")):
            ep.request(f)
            assert f.response is None
        answered = get_metrics()
        answered.response = http.Response.make(401)
        ep.request(answered)
        assert answered.response.status_code == 401
        tctx.configure(ep, qwen_metrics=False)
        f = get_metrics()
        ep.request(f)
        assert f.response is None


def finished(meta: dict, *, stream: bool = False) -> http.HTTPFlow:
    f = tflow.tflow(resp=True)
    if stream:
        f.response.headers["content-type"] = "text/event-stream; charset=utf-8"
    f.metadata["qwen"] = meta
    return f


async def test_recorder_counts_requests_tokens_latency_and_retries():
    m = GatewayMetrics()
    ep, rec = MetricsEndpoint(None, m), MetricsRecorder(m)
    with taddons.context(GatewayOptions(), ep, rec):
        rec.response(finished(record(ttfb_ms=85.0, stream=True)))
        rec.response(finished(record(retries=2, notes=["401 from Qwen: refreshed default",
                                                       "quota exhausted on default: rotated"], account="ds",
                                     upstream_model="qwen3-coder-plus")))
        rec.response(finished(record(retries=1, notes=["throttled on default: waited 1s"])))
        rec.response(finished(record(retries=1, notes=[])))
        rec.response(finished(record(retries=0, notes=["quota exhausted on ds: rotated"], status=None, usage=None,
                                     error={"status": 429, "code": "insufficient_quota", "message": "m"})))
        failed = finished(record(status=None, usage=None, error={"status": 502, "code": "x", "message": "reset"}))
        failed.response, failed.error = None, tflow.terr()
        rec.error(failed)
        rec.response(tflow.tflow(resp=True))  # not a gateway flow
        f = get_metrics()
        ep.request(f)
    s = scrape(f)

    def req(status, account="default", upstream="coder-model"):
        return s.get(("qwen_requests_total", (("account", account), ("endpoint", "chat.completions"),
                                              ("model", "gpt-4o"), ("status", status),
                                              ("upstream_model", upstream))), 0)

    assert (req("200"), req("200", "ds", "qwen3-coder-plus"), req("429"), req("502")) == (3, 1, 1, 1)
    assert s[("qwen_tokens_total", (("account", "default"), ("kind", "prompt"), ("model", "coder-model")))] == 3 * 1180
    assert s[("qwen_tokens_total", (("account", "default"), ("kind", "cached"), ("model", "coder-model")))] == 3 * 1024
    assert s[("qwen_tokens_total", (("account", "ds"), ("kind", "completion"), ("model", "qwen3-coder-plus")))] == 42
    assert s[("qwen_request_duration_seconds_count", (("endpoint", "chat.completions"), ("model", "coder-model")))] == 5
    assert s[("qwen_request_duration_seconds_sum", (("endpoint", "chat.completions"), ("model", "coder-model")))] \
        == 5 * 1.31
    hist = (("endpoint", "chat.completions"), ("model", "coder-model"))
    assert s[("qwen_time_to_first_byte_seconds_count", hist)] == 1
    retries = {dict(k[1])["reason"]: v for k, v in s.items() if k[0] == "qwen_retries_total"}
    assert retries == {"refreshed": 1, "rotated": 1, "throttled": 1, "other": 1}  # the failed rotation: no retry
    assert s[("qwen_account_rotations_total", ())] == 1
    assert s[("qwen_streams_in_flight", ())] == 0


async def test_streams_in_flight():
    m = GatewayMetrics()
    rec = MetricsRecorder(m)
    with taddons.context(rec):
        a, b = finished(record(stream=True), stream=True), finished(record(stream=True), stream=True)
        plain = finished(record())
        other = tflow.tflow(resp=True)
        other.response.headers["content-type"] = "text/event-stream"  # not a gateway flow
        for f in (a, b, plain, other):
            rec.responseheaders(f)
        rec.responseheaders(a)  # a second call does not count twice
        assert m.streams._value.get() == 2
        rec.response(a)
        assert m.streams._value.get() == 1
        b.error = tflow.terr()
        rec.error(b)
        rec.response(plain)
        assert m.streams._value.get() == 0


async def test_recording_off_with_qwen_metrics_false():
    m = GatewayMetrics()
    ep, rec = MetricsEndpoint(None, m), MetricsRecorder(m)
    with taddons.context(ep, rec) as tctx:
        tctx.configure(ep, qwen_metrics=False)
        rec.configure({"qwen_metrics"})
        rec.response(finished(record()))
    assert m.requests._metrics == {}


def test_own_registry_not_the_global_one():
    m = GatewayMetrics()
    assert m.registry is not REGISTRY
    assert "qwen_requests_total" not in {s.name for fam in REGISTRY.collect() for s in fam.samples}
    assert shared_metrics() is shared_metrics()
    assert MetricsEndpoint().metrics is MetricsRecorder().m  # constructed without one: they share
