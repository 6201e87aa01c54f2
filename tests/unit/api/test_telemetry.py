"""Codex's OTLP telemetry answered locally (api/telemetry.py): OTLP's full success in the request's encoding, the
metrics themselves dropped from the flow."""

from __future__ import annotations

from mitmproxy.test import tflow

from qwen_gateway.api import telemetry
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.settings.config import Config


async def answered(content_type: str, body: bytes):
    f = tflow.tflow()
    f.request.method, f.request.path = "POST", "/otlp/v1/metrics"
    f.request.headers["content-type"] = content_type
    f.request.content = body
    ex = Exchange(ClientRequest("POST", "/otlp/v1/metrics", "https://ab.chatgpt.com/otlp/v1/metrics"))
    return f, ex, await telemetry.answer(ex, f, Config())


async def test_protobuf_metrics_get_an_empty_protobuf_answer():
    f, ex, resp = await answered("application/x-protobuf", b"\x0a\x03abc")
    assert resp.status_code == 200 and resp.content == b""
    assert resp.headers["content-type"] == "application/x-protobuf"


async def test_json_metrics_get_an_empty_json_object():
    _, _, resp = await answered("application/json", b'{"resourceMetrics": []}')
    assert resp.status_code == 200 and resp.content == b"{}" and resp.headers["content-type"] == "application/json"


async def test_the_metrics_are_dropped_and_only_their_size_noted():
    f, ex, _ = await answered("application/x-protobuf", b"model=gpt-5" * 10)
    assert f.request.content == b""
    assert ex.notes == ["Codex telemetry (110 bytes) answered locally and dropped: nothing went to OpenAI"]
