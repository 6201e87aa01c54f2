"""The client's body (ingress/body.py): read once, its decoded size noted on the exchange's client request."""

from __future__ import annotations

import dataclasses

import pytest
from mitmproxy import http

from mitmproxy.test import tflow

from qwen_gateway.ingress import body
from qwen_gateway.exchange import ClientRequest, Exchange


def test_reading_the_body_notes_its_size_without_dataclasses_replace(monkeypatch):
    """dataclasses.replace walks every field of the request for one new value: the request is made directly."""
    replaced = []
    real = dataclasses.replace
    monkeypatch.setattr(dataclasses, "replace", lambda *a, **kw: replaced.append(kw) or real(*a, **kw))
    flow = tflow.tflow()
    flow.request.content = b'{"model": "gpt-4o"}'
    client = ClientRequest("POST", "/v1/chat/completions", "http://127.0.0.1:8080/v1/chat/completions", "sk-… (9 chars)",
                           api_headers=(("anthropic-version", "2023-06-01"),))
    ex = Exchange(client)
    assert body.read(flow, ex, 1024) == b'{"model": "gpt-4o"}'
    assert ex.client == real(client, size=19) and replaced == []


@pytest.mark.parametrize("fields", [[], [(b"Content-Encoding", b"gzip")], [(b"content-encoding", b"gzip"),
                                    (b"x", b"y"), (b"CONTENT-ENCODING", b"br")], [(b"content-encoding", b"\xff")]])
def test_the_content_encoding_is_what_mitmproxys_lookup_says(fields):
    req = tflow.tflow().request
    req.headers = http.Headers(fields)
    assert body.content_encoding(req) == req.headers.get("content-encoding", "")


def test_reading_the_body_looks_no_header_up_through_mitmproxys_headers(monkeypatch):
    looked_up = []
    real = http.Headers.get_all
    monkeypatch.setattr(http.Headers, "get_all", lambda h, name: looked_up.append(name) or real(h, name))
    flow = tflow.tflow()
    flow.request.headers.fields = ((b"content-type", b"application/json"),)
    flow.request.raw_content = b"{}"
    assert body.read(flow, Exchange(ClientRequest("POST", "/v1/chat/completions", "http://x/")), 1024) == b"{}"
    assert looked_up == []
