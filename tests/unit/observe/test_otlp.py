"""Traces sent as OTLP/JSON over HTTP (observe/otlp.py): the standard OTEL_ variables, attributes in OTLP/JSON's
shape, and the exporter's batches as a collector on loopback receives them (a server in a thread of this process)."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from qwen_gateway.observe import otlp


def test_the_standard_variables():
    s = otlp.Settings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://u:p@collector:4318/",
                                "OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer%20s3cret, x-a = b%2Cc",
                                "OTEL_EXPORTER_OTLP_TIMEOUT": "2500", "OTEL_RESOURCE_ATTRIBUTES": "team=ai,service.name=x",
                                "OTEL_SERVICE_NAME": "gw"})
    assert (s.endpoint, s.shown) == ("https://u:p@collector:4318/v1/traces", "https://collector:4318/v1/traces")
    assert s.headers == {"Authorization": "Bearer s3cret", "x-a": "b,c"} and "s3cret" not in repr(s)
    assert (s.timeout_s, s.resource) == (2.5, {"team": "ai", "service.name": "gw"})
    t = otlp.Settings.from_env({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/custom?token=t",
                                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4318"})
    assert (t.endpoint, t.shown) == ("http://c:4318/custom?token=t", "http://c:4318/custom")  # as it is; shown bare
    assert (t.protocol, t.resource) == ("http/json", {"service.name": "qwen-gateway"})
    assert otlp.Settings.from_env({}).endpoint == "http://localhost:4318/v1/traces"


def test_attributes_in_otlp_jsons_shape():
    assert otlp.attribute("n", 5) == {"key": "n", "value": {"intValue": "5"}}  # 64-bit integers as strings
    assert otlp.attribute("ok", True) == {"key": "ok", "value": {"boolValue": True}}
    assert otlp.attribute("t", 0.5) == {"key": "t", "value": {"doubleValue": 0.5}}
    assert otlp.attribute("l", ["a", 1]) == {"key": "l", "value": {"arrayValue": {"values": [
        {"stringValue": "a"}, {"intValue": "1"}]}}}
    assert otlp.attribute("x", None) == {"key": "x", "value": {"stringValue": "None"}}


class Collector:
    """POST /v1/traces answered `status`, each body kept."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.status = status
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                collector.bodies.append(json.loads(raw))
                collector.headers.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(collector.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector():
    c = Collector()
    yield c
    c.close()


def exporter(collector: Collector, **env: str) -> otlp.Exporter:
    return otlp.Exporter(otlp.Settings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
                                                 "OTEL_EXPORTER_OTLP_HEADERS": "x-token=t1",
                                                 "OTEL_BSP_SCHEDULE_DELAY": "3600000", **env}))


def test_queued_spans_are_sent_in_batches_at_close_with_the_resource(collector):
    exp = exporter(collector, OTEL_BSP_MAX_EXPORT_BATCH_SIZE="2", OTEL_SERVICE_NAME="gw")
    exp.add([{"name": f"s{i}"} for i in range(3)])
    exp.close()
    sent = [[s["name"] for s in b["resourceSpans"][0]["scopeSpans"][0]["spans"]] for b in collector.bodies]
    assert sorted(sent) == [["s0", "s1"], ["s2"]]
    resource = collector.bodies[0]["resourceSpans"][0]["resource"]["attributes"]
    assert {"key": "service.name", "value": {"stringValue": "gw"}} in resource
    assert collector.headers[0]["x-token"] == "t1" and collector.headers[0]["content-type"] == "application/json"


def test_spans_beyond_the_queue_are_dropped_and_said_once(collector, caplog):
    exp = exporter(collector, OTEL_BSP_MAX_QUEUE_SIZE="2", OTEL_BSP_MAX_EXPORT_BATCH_SIZE="10")
    with caplog.at_level(logging.WARNING, logger="qwen"):
        exp.add([{"name": "a"}, {"name": "b"}])
        exp.add([{"name": "c"}])  # the queue is full: dropped
        exp.close()
    assert [s["name"] for b in collector.bodies for s in b["resourceSpans"][0]["scopeSpans"][0]["spans"]] == ["a", "b"]
    assert [m for m in caplog.messages if "dropped" in m] == [
        f"qwen: traces: 1 spans dropped, more than OTEL_BSP_MAX_QUEUE_SIZE (2) were waiting for {collector.url}"
        "/v1/traces"]


def test_a_backend_that_refuses_is_said_once_per_outage(caplog):
    refusing = Collector(status=503)
    try:
        exp = exporter(refusing, OTEL_BSP_MAX_EXPORT_BATCH_SIZE="1")
        with caplog.at_level(logging.INFO, logger="qwen"):
            exp.add([{"name": "a"}, {"name": "b"}])
            exp.close()
    finally:
        refusing.close()
    assert len(refusing.bodies) == 2  # both batches tried
    assert [m for m in caplog.messages if "did not take" in m] == [
        f"qwen: traces: {refusing.url}/v1/traces did not take 1 spans (HTTP 503): dropped; the next batches are "
        "tried as they come"]
