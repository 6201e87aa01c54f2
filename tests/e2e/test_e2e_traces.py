"""OpenTelemetry traces through real mitmdump (issue 40, item 5), sent to an OTLP/HTTP receiver this test runs on
loopback and read with OpenTelemetry's own schema (opentelemetry-proto, strict): a span per request after the
GenAI conventions, each upstream attempt a child span, the client's W3C traceparent continued (never sent on to
Qwen), the standard OTEL_* variables honoured (endpoint, headers, service name), and no key, credential, prompt or
answer text in any span. Off (the default without an endpoint): nothing loaded (test_lazy_imports.py), no work
per request (test_workcount.py). Unit: test_tracing.py."""

from __future__ import annotations

import base64
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import openai
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from helpers.procs import until

pytestmark = pytest.mark.e2e

CLIENT_KEY = f"sk-client-{secrets.token_hex(8)}"
OTLP_SECRET = f"otlp-secret-{secrets.token_hex(8)}"
PROMPT = f"zebra-{secrets.token_hex(6)} say hi"
SERVER, CLIENT = 2, 3  # OTLP's SpanKind
ERROR = 2  # OTLP's StatusCode


class Receiver:
    """An OTLP/HTTP receiver on loopback: every POST kept (path, headers, body), answered 200 `{}`."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                posts.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def requests(self) -> list[ExportTraceServiceRequest]:
        """Each POST read as OTLP/JSON with OpenTelemetry's schema (unknown fields refused): the ids, hex in
        OTLP/JSON, given to protobuf's reader as the base64 it reads `bytes` from."""
        out = []
        for _, _, body in list(self.posts):
            data = json.loads(body)
            for rs in data.get("resourceSpans", []):
                for ss in rs.get("scopeSpans", []):
                    for span in ss.get("spans", []):
                        for key in ("traceId", "spanId", "parentSpanId"):
                            if span.get(key):
                                span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
            out.append(json_format.Parse(json.dumps(data), ExportTraceServiceRequest()))
        return out

    def spans(self) -> list:
        return [span for req in self.requests() for rs in req.resource_spans for ss in rs.scope_spans
                for span in ss.spans]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def attrs(span) -> dict:
    out = {}
    for kv in span.attributes:
        v = kv.value
        kind = v.WhichOneof("value")
        out[kv.key] = [getattr(x, x.WhichOneof("value")) for x in v.array_value.values] if kind == "array_value" \
            else getattr(v, kind)
    return out


def traced_gateway(make_gateway, oauth_home, tmp_path, receiver, *args: str):
    env = {**oauth_home["env"], "QWEN_GATEWAY_HOME": str(tmp_path / "state"), "QWEN_GATEWAY_KEYS": CLIENT_KEY,
           "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_SERVICE_NAME": "gateway-under-test",
           "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer%20{OTLP_SECRET},x-tenant=team%2Done",
           "OTEL_BSP_SCHEDULE_DELAY": "100"}
    return make_gateway(env=env, args=args)


def test_a_span_per_request_its_upstream_call_a_child_the_clients_trace_continued(
        make_gateway, emu, oauth_home, tmp_path, receiver):
    gw = traced_gateway(make_gateway, oauth_home, tmp_path, receiver)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    chunks = list(client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": PROMPT}], stream=True, stream_options={"include_usage": True},
        extra_headers={"traceparent": f"00-{trace_id}-{parent_id}-01"}))
    answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    whole = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": PROMPT}])
    refused = httpx.post(gw.url + "/v1/chat/completions", headers={"authorization": "Bearer sk-not-a-key-of-ours"},
                         json={"model": "gpt-4o", "messages": [{"role": "user", "content": PROMPT}]}, trust_env=False)
    assert refused.status_code == 401

    spans = until(lambda: (s := receiver.spans()) and len(s) >= 5 and s, "five spans at the receiver", limit=20)
    path, headers, _ = receiver.posts[0]
    assert path == "/v1/traces" and headers["content-type"] == "application/json"
    assert headers["authorization"] == f"Bearer {OTLP_SECRET}" and headers["x-tenant"] == "team-one"  # decoded
    resource = {kv.key: kv.value.string_value for kv in receiver.requests()[0].resource_spans[0].resource.attributes}
    assert resource["service.name"] == "gateway-under-test"

    servers = [s for s in spans if s.kind == SERVER]
    clients = [s for s in spans if s.kind == CLIENT]
    assert len(servers) == 3 and len(clients) == 2, [(s.name, s.kind) for s in spans]
    streamed = next(s for s in servers if s.trace_id.hex() == trace_id)
    assert streamed.parent_span_id.hex() == parent_id  # the client's traceparent continued
    a = attrs(streamed)
    assert streamed.name == "chat gpt-4o"
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "dashscope"
    assert a["gen_ai.system"] == "dashscope" and a["gen_ai.request.model"] == "gpt-4o"
    assert a["gen_ai.response.model"] == "coder-model"  # what Qwen answered with (the client sees its own name)
    usage = chunks[-1].usage
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (usage.prompt_tokens,
                                                                                usage.completion_tokens)
    assert a["gen_ai.response.finish_reasons"] == ["stop"] and a["http.response.status_code"] == 200
    assert "error.type" not in a and streamed.status.code != ERROR
    upstream = next(c for c in clients if c.trace_id == streamed.trace_id)
    assert upstream.parent_span_id == streamed.span_id  # the upstream call, a child
    assert upstream.name == "chat coder-model" and attrs(upstream)["gen_ai.request.model"] == "coder-model"
    assert attrs(upstream)["server.address"] == "127.0.0.1" and attrs(upstream)["http.response.status_code"] == 200
    assert streamed.start_time_unix_nano <= upstream.start_time_unix_nano <= upstream.end_time_unix_nano \
        <= streamed.end_time_unix_nano

    plain = next(s for s in servers if s.trace_id != streamed.trace_id and attrs(s).get("http.response.status_code") == 200)
    assert not plain.parent_span_id  # no traceparent: a trace of its own
    assert attrs(plain)["gen_ai.response.finish_reasons"] == ["stop"]
    assert attrs(plain)["gen_ai.usage.output_tokens"] == whole.usage.completion_tokens
    denied = next(s for s in servers if attrs(s).get("http.response.status_code") == 401)
    assert attrs(denied)["error.type"] == "invalid_api_key" and denied.status.code == ERROR

    # no key, credential, prompt or answer in a span (nor anywhere in what was sent), no traceparent to Qwen
    sent = b"".join(body for _, _, body in receiver.posts).decode()
    for secret in (CLIENT_KEY, "sk-not-a-key-of-ours", oauth_home["token"], OTLP_SECRET, PROMPT.split()[0],
                   answer, whole.choices[0].message.content):
        assert secret not in sent, secret
    assert all("traceparent" not in {k.lower() for k in r["headers"]} for r in emu.chat_requests())


def test_each_upstream_attempt_is_a_span_of_its_own(make_gateway, emu, oauth_home, tmp_path, receiver):
    gw = traced_gateway(make_gateway, oauth_home, tmp_path, receiver)
    emu.fault("throttle429", retry_after=1)  # the first attempt is throttled; the gateway waits and tries again
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": PROMPT}])
    spans = until(lambda: (s := receiver.spans()) and len(s) >= 3 and s, "three spans at the receiver", limit=20)
    [server] = [s for s in spans if s.kind == SERVER]
    attempts = sorted((s for s in spans if s.kind == CLIENT), key=lambda s: s.start_time_unix_nano)
    assert len(attempts) == 2 and all(s.parent_span_id == server.span_id for s in attempts)
    first, second = map(attrs, attempts)
    assert first["http.response.status_code"] == 429 and first["error.type"] == "throttled"
    assert attempts[0].status.code == ERROR and attempts[0].end_time_unix_nano <= attempts[1].start_time_unix_nano
    assert second["http.response.status_code"] == 200 and "error.type" not in second
    assert "error.type" not in attrs(server) and attrs(server)["http.response.status_code"] == 200
