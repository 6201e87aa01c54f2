"""The answer to a request head over qwen_max_header_kb (ingress/oversized_head.py), in the dialect its first bytes
say. The head limit inside mitmproxy's HTTP/1 reader: tests/unit/seams/test_http1_heads.py."""

from __future__ import annotations

import json

from qwen_gateway import components
from qwen_gateway.errors import GatewayError
from qwen_gateway.ingress import oversized_head
from qwen_gateway.local_answers import Formats


def test_a_head_from_an_unparsable_first_line_still_gets_an_answer():
    assert oversized_head.first_lines(b"") == ("GET", "/", "", False)
    assert oversized_head.first_lines(b"POST http://api.openai.com/v1/responses?x=1 HTTP/1.1\r\nHost: y\r\n") == \
        ("POST", "/v1/responses", "api.openai.com", False)
    assert oversized_head.first_lines(b"post /v1/messages HTTP/1.1\r\nHOST: a.b\r\nAnthropic-Version: 1\r\n") == \
        ("POST", "/v1/messages", "a.b", True)


def answer(head: bytes) -> tuple[int, dict]:
    formats = Formats(components.client_formats())
    endpoints = components.endpoints(lambda: None, lambda: None)
    e = GatewayError(431, "Request header fields too large.", code="request_header_fields_too_large")
    resp = oversized_head.answer(head, e, endpoints, formats)
    return resp.status_code, json.loads(resp.content)


def test_an_openai_client_reads_openais_error():
    status, body = answer(b"POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\nX-Big: aaaa")
    assert status == 431 and body["error"]["code"] == "request_header_fields_too_large"


def test_a_messages_client_reads_anthropics_error():
    status, body = answer(b"POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\nX-Big: aaaa")
    assert body["type"] == "error" and body["error"]["message"] == "Request header fields too large."


def test_a_local_route_asked_by_an_anthropic_sdk_reads_anthropics_error():
    _, body = answer(b"GET /v1/models HTTP/1.1\r\nanthropic-version: 2023-06-01\r\nX-Big: aaaa")
    assert body["type"] == "error"
    _, body = answer(b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\nX-Big: aaaa")
    assert "error" in body and "type" not in body  # OpenAI's shape
