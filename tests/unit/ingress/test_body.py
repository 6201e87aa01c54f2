"""The client's body (ingress/body.py): read once, its decoded size noted on the exchange's client request."""

from __future__ import annotations

import threading

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


async def test_a_large_body_is_parsed_in_a_worker_thread(monkeypatch):
    """Issue 79 item 6: a body of off_loop.PARSE_BYTES or more is parsed by a worker thread (a 7.9 MB body of
    200,000 messages held the event loop ~190 ms); a smaller one on the loop."""
    from qwen_gateway import off_loop
    from qwen_gateway.ingress import body as body_mod
    threads = []
    real = body_mod.loads_client
    monkeypatch.setattr(body_mod, "loads_client", lambda data: threads.append(threading.get_ident()) or real(data))
    for size in (off_loop.PARSE_BYTES - 1, off_loop.PARSE_BYTES):
        content = b'{"model": "m", "pad": "' + b"x" * (size - 25) + b'"}'
        assert len(content) == size
        assert (await body_mod.parsed(content))["model"] == "m"
    assert threads[0] == threading.get_ident() != threads[1]
