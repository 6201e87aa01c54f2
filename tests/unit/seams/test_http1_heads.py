"""The head limit inside mitmproxy's HTTP/1 server layer (seams/http1_heads.py), driven with real events as
mitmproxy's own layer tests do: a head over the limit is a 431 in the client's format (ingress/oversized_head.py)
and what follows is dropped, an endless chunk-size line a 400; and on another mitmproxy's layer the seam
refuses, leaving it as it is."""

from __future__ import annotations

import json
import logging

import pytest
from helpers import another_mitmproxy
from mitmproxy.proxy import commands, context, events, layers
from mitmproxy.proxy.layers.http import HTTPMode
from mitmproxy.proxy.layers.http import _http1
from mitmproxy.proxy.layers.http._base import ReceiveHttp
from mitmproxy.proxy.layers.http._events import RequestHeaders, RequestProtocolError
from mitmproxy import options
from mitmproxy.test import tflow

from qwen_gateway import components
from qwen_gateway.ingress import oversized_head
from qwen_gateway.local_answers import Formats
from qwen_gateway.seams import fingerprint, http1_heads


@pytest.fixture
def limited():
    formats = Formats(components.client_formats())
    endpoints = components.endpoints(lambda: None, lambda: None)
    before = http1_heads._limit
    assert http1_heads.install(http1_heads.Limit(1024, lambda head, e: oversized_head.answer(head, e, endpoints,
                                                                                           formats)))
    yield
    http1_heads.install(before)


def server() -> tuple[_http1.Http1Server, context.Context]:
    ctx = context.Context(tflow.tclient_conn(), options.Options())
    layer = _http1.Http1Server(ctx)
    list(layer.handle_event(events.Start()))
    return layer, ctx


def feed(layer, ctx, data: bytes) -> list:
    return list(layer.handle_event(events.DataReceived(ctx.client, data)))


def test_a_head_within_the_limit_goes_to_mitmproxy_untouched(limited):
    layer, ctx = server()
    cmds = feed(layer, ctx, b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 900 + b"\r\n\r\n")
    assert [type(c.event) for c in cmds if isinstance(c, ReceiveHttp)][:1] == [RequestHeaders]


def test_a_head_that_ends_within_the_limit_is_read_even_when_more_bytes_came(limited):
    layer, ctx = server()
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n"
    cmds = feed(layer, ctx, head + b"{" * 2000)  # head and body in one read: 2 KiB in the buffer
    assert any(isinstance(c, ReceiveHttp) and isinstance(c.event, RequestHeaders) for c in cmds)
    assert not any(isinstance(c, commands.SendData) for c in cmds)


@pytest.mark.parametrize(("start", "dialect"), [
    (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n", "openai"),
    (b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n", "anthropic"),
    (b"GET /v1/models HTTP/1.1\r\nanthropic-version: 2023-06-01\r\n", "anthropic"),
    (b"POST http://api.anthropic.com/v1/messages/count_tokens HTTP/1.1\r\n", "anthropic"),
    (b"\x16\x03\x01garbage", "openai"),
])
def test_a_head_over_the_limit_is_a_431_in_the_clients_format_and_the_rest_is_dropped(limited, start, dialect):
    layer, ctx = server()
    assert feed(layer, ctx, start + b"X-Pad: ") == []
    cmds = feed(layer, ctx, b"a" * 2000)
    sent = [c for c in cmds if isinstance(c, commands.SendData)]
    assert len(sent) == 1 and sent[0].data.startswith(b"HTTP/1.1 431 ")
    body = json.loads(sent[0].data.partition(b"\r\n\r\n")[2])
    if dialect == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        assert b"request-id: req_" in sent[0].data
    else:
        assert body["error"]["code"] == "request_header_fields_too_large"
    assert "1 KiB" in json.dumps(body)
    assert any(isinstance(c, commands.CloseTcpConnection) and c.half_close for c in cmds)
    assert not any(isinstance(c, ReceiveHttp) for c in cmds)  # no flow: nothing reached the gateway's hooks
    # what the client still sends is dropped, not kept; past DISCARD_LIMIT the connection is closed
    for _ in range(http1_heads.DISCARD_LIMIT // 65536 - 1):
        assert feed(layer, ctx, b"a" * 65536) == [] and len(layer.buf) == 0
    assert [type(c) for c in feed(layer, ctx, b"a" * 65536)] == [commands.CloseConnection]


def test_a_refused_client_that_closes_is_closed(limited):
    layer, ctx = server()
    feed(layer, ctx, b"GET / HTTP/1.1\r\nX: " + b"a" * 2000)
    cmds = list(layer.handle_event(events.ConnectionClosed(ctx.client)))
    assert [type(c) for c in cmds] == [commands.CloseConnection]


def test_an_endless_chunk_size_line_fails_the_request_with_a_400(limited):
    layer, ctx = server()
    feed(layer, ctx, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1")
    cmds = feed(layer, ctx, b"1" * 2000)
    sent = [c for c in cmds if isinstance(c, commands.SendData)]
    assert sent and sent[0].data.startswith(b"HTTP/1.1 400 ")
    assert json.loads(sent[0].data.partition(b"\r\n\r\n")[2])["error"]["code"] == "invalid_chunked_body"
    assert any(isinstance(c, ReceiveHttp) and isinstance(c.event, RequestProtocolError) for c in cmds)
    assert any(type(c) is commands.CloseConnection for c in cmds)


@pytest.fixture
def never_installed(monkeypatch):
    """The process as if the seam had never been installed (an earlier test of this process may have)."""
    monkeypatch.setattr(fingerprint, "_told", set())
    monkeypatch.setattr(fingerprint, "decided", {})  # this test decides anew
    for name, state in http1_heads._original.items():
        monkeypatch.setattr(_http1.Http1Server, name, state)
    monkeypatch.setattr(http1_heads, "_original", {})
    monkeypatch.setattr(http1_heads, "_limit", http1_heads._limit)


def test_on_another_mitmproxys_http1_layer_heads_are_left_unbounded_with_one_line(never_installed, tmp_path,
                                                                                  monkeypatch, caplog):
    """The seam was written against mitmproxy 12.2.3's Http1Server: one changed line (a comment, even) and it
    does not touch the class, says so once, and the gateway goes on."""
    other = another_mitmproxy.release("mitmproxy.proxy.layers.http._http1", tmp_path, monkeypatch)
    monkeypatch.setattr(_http1, "Http1Server", other.Http1Server)
    states = {name: vars(other.Http1Server).get(name) for name in ("read_headers", "read_body", "wait")}
    with caplog.at_level(logging.WARNING, logger="qwen"):
        assert not http1_heads.install(http1_heads.Limit(1024))
        assert not http1_heads.install(http1_heads.Limit(2048))  # configure again: no second line
    assert {name: vars(other.Http1Server).get(name) for name in states} == states
    assert not http1_heads.installed()
    [line] = caplog.messages
    assert line.startswith("qwen: request heads bounded in mitmproxy's HTTP/1 reader: left out, as this mitmproxy")
    assert "(mitmproxy 12.2.3; changed: Http1Server, Http1Server.read_headers)" in line
    assert "request heads are bounded by a layer around mitmproxy's HTTP layer instead (public API)" in line
    layer = other.Http1Server(context.Context(tflow.tclient_conn(), options.Options()))
    list(layer.handle_event(events.Start()))
    assert list(layer.handle_event(events.DataReceived(layer.conn, b"GET / HTTP/1.1\r\nX: " + b"a" * 4096))) == []
    assert len(layer.buf) > 4096  # mitmproxy's own reader: held, not refused


def test_a_state_another_addon_replaced_is_not_the_code_either(never_installed, tmp_path, monkeypatch, caplog):
    """The same class as shipped, but its read_headers replaced at run time (by another addon, or here by the
    edited copy): the seam does not wrap what it has not read."""
    other = another_mitmproxy.release("mitmproxy.proxy.layers.http._http1", tmp_path, monkeypatch)
    monkeypatch.setattr(_http1.Http1Server, "read_headers", other.Http1Server.read_headers)
    with caplog.at_level(logging.WARNING, logger="qwen"):
        assert not http1_heads.install(http1_heads.Limit(1024))
    assert _http1.Http1Server.read_headers is other.Http1Server.read_headers
    assert "(mitmproxy 12.2.3; changed: Http1Server.read_headers)" in caplog.messages[0]


def bound_http_layer() -> tuple[http1_heads.HeadBound, context.Context]:
    """mitmproxy's HTTP layer for a client connection, as its NextLayer addon chose it, behind the fallback."""
    from mitmproxy.addons.proxyserver import Proxyserver
    from mitmproxy.proxy import layer as proxy_layer

    opts = options.Options()
    Proxyserver().load(opts)  # the proxy's options, which the HTTP layer reads (as mitmproxy's layer tests do)
    ctx = context.Context(tflow.tclient_conn(), opts)
    ctx.client.alpn = None
    nextlayer = proxy_layer.NextLayer(ctx)

    def decide(nl):
        nl.layer = layers.HttpLayer(nl.context, HTTPMode.regular)

    http1_heads.bound_layer(nextlayer, decide)
    assert isinstance(nextlayer.layer, http1_heads.HeadBound)
    list(nextlayer.layer.handle_event(events.Start()))
    return nextlayer.layer, ctx


def test_without_the_seam_a_head_over_the_limit_is_refused_through_a_layer_of_the_gateways(never_installed):
    http1_heads._limit = http1_heads.Limit(1024)
    bound, ctx = bound_http_layer()
    first = feed(bound, ctx, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 600)
    assert not any(isinstance(c, commands.SendData) for c in first)  # within the limit so far: mitmproxy reads
    refused = feed(bound, ctx, b"a" * 600)
    sent = [c for c in refused if isinstance(c, commands.SendData)]
    assert len(sent) == 1 and sent[0].data.startswith(b"HTTP/1.1 431 ")
    assert b"request_header_fields_too_large" in sent[0].data
    assert any(isinstance(c, commands.CloseTcpConnection) and c.half_close for c in refused)
    assert feed(bound, ctx, b"b" * 4096) == []  # what the client still sends is dropped
    assert any(isinstance(c, commands.CloseConnection) for c in feed(bound, ctx, b"c" * (2 << 20)))


def test_without_the_seam_a_head_within_the_limit_goes_to_mitmproxys_http_layer(never_installed):
    http1_heads._limit = http1_heads.Limit(1024)
    bound, ctx = bound_http_layer()
    cmds = feed(bound, ctx, b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 900 + b"\r\n\r\n")
    assert any(isinstance(c, layers.http.HttpRequestHeadersHook) for c in cmds)
    assert bound.head is None  # the head is whole: not counted until the answer's end


def answer_hooks(top, event) -> list:
    """`event` through `top`, each blocking hook and connection it asks for answered at once (no addon, a server
    connection opened): what mitmproxy's server does around a layer stack."""
    out, pending = [], [event]
    while pending:
        for command in top.handle_event(pending.pop(0)):
            out.append(command)
            if isinstance(command, commands.StartHook) and command.blocking:
                pending.append(events.HookCompleted(command))
            elif isinstance(command, commands.OpenConnection):
                pending.append(events.OpenConnectionCompleted(command, None))
    return out


PIPED_HEAD = b"GET http://example.com/ HTTP/1.1\r\nX-Pad: "  # the next request's head, never ended


@pytest.mark.parametrize("path", ["seam", "public"])
def test_a_head_piped_ahead_of_an_answer_is_held_to_the_limit_only_by_the_seam(never_installed, monkeypatch, path):
    """Why the seam stays (docs/architecture.md#seams): a request whose answer is pending, then the next head
    sent behind it. The `next_layer` path sees the client's bytes but not where mitmproxy's reader is in them:
    once a head is whole it cannot tell the body from what comes after it, so the next head goes into
    mitmproxy's buffer unbounded. The seam is in that reader (`Http1Server.wait`) and closes the connection at
    the limit."""
    limit = 1024
    if path == "seam":
        for name in ("read_headers", "read_body", "wait"):  # put back after the test, as they are now
            monkeypatch.setattr(_http1.Http1Server, name, vars(_http1.Http1Server)[name])
        assert http1_heads.install(http1_heads.Limit(limit))
    http1_heads._limit = http1_heads.Limit(limit)
    bound, ctx = bound_http_layer()  # mitmproxy's HTTP layer, behind the public path's layer
    first = answer_hooks(bound, events.DataReceived(ctx.client, b"GET http://example.com/ HTTP/1.1\r\n"
                                                                b"Host: example.com\r\n\r\n"))
    assert any(isinstance(c, layers.http.HttpRequestHook) for c in first)  # sent on; its answer is pending
    reader = bound.child.connections[ctx.client]
    closed = False
    for data in [PIPED_HEAD] + [b"a" * 4096] * 8:  # 32 KiB of a head, against a limit of 1 KiB
        cmds = answer_hooks(bound, events.DataReceived(ctx.client, data))
        closed = closed or any(type(c) is commands.CloseConnection and c.connection is ctx.client for c in cmds)
    if path == "seam":
        assert closed and len(reader.buf) <= limit + 4096  # the limit and one read, then closed
    else:
        assert not closed and len(reader.buf) > 32 << 10  # all 32 KiB held by mitmproxy's reader
