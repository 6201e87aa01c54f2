"""mitmproxy's own 413 past body_size_limit in JSON (seams/body_limit.py), driven as mitmproxy's layer tests do:
an HTTP/1 server layer told the request is too large writes the gateway's JSON answer, not mitmproxy's HTML
page; every other protocol error keeps mitmproxy's; on another mitmproxy the seam refuses with one line."""

from __future__ import annotations

import json
import logging

import pytest
from mitmproxy import options
from mitmproxy.proxy import commands, context, events
from mitmproxy.proxy.layers.http import ErrorCode, _http1
from mitmproxy.proxy.layers.http._events import ResponseProtocolError
from mitmproxy.test import tflow

from qwen_gateway.ingress import access
from qwen_gateway.seams import body_limit, fingerprint
from helpers import another_mitmproxy


@pytest.fixture
def installed():
    assert body_limit.install(access.too_large_answer(1 << 20))


def refused(layer_event: ResponseProtocolError) -> bytes:
    """What mitmproxy's HTTP/1 server layer writes for `layer_event` on a request that was read."""
    ctx = context.Context(tflow.tclient_conn(), options.Options())
    layer = _http1.Http1Server(ctx)
    list(layer.handle_event(events.Start()))
    list(layer.handle_event(events.DataReceived(ctx.client, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                                            b"Content-Length: 99999999\r\n\r\n")))
    sent = [c for c in layer.send(layer_event) if isinstance(c, commands.SendData)]
    return b"".join(c.data for c in sent)


def test_the_413_past_body_size_limit_is_json_both_sdks_read(installed):
    raw = refused(ResponseProtocolError(1, body_limit.BODY_LIMIT, ErrorCode.REQUEST_TOO_LARGE))
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ") and b"content-type: application/json" in head.lower()
    assert b"connection: close" in head.lower()
    error = json.loads(body)
    assert error["type"] == "error"  # Anthropic's SDKs
    assert error["error"]["type"] == error["error"]["code"] == "request_too_large"  # both
    assert error["error"]["message"] == ("Request body too large: the limit is 1 MiB (qwen_max_body_mb), or mitmproxy's "
                                         "body_size_limit where that is lower.")


def test_a_new_limit_is_a_new_answer(installed):
    assert body_limit.install(access.too_large_answer(8 << 20))
    raw = refused(ResponseProtocolError(1, body_limit.BODY_LIMIT, ErrorCode.REQUEST_TOO_LARGE))
    assert b"the limit is 8 MiB" in raw


def test_other_protocol_errors_keep_mitmproxys_answer(installed):
    raw = refused(ResponseProtocolError(1, "Request body exceeds something else.", ErrorCode.REQUEST_TOO_LARGE))
    assert b"text/html" in raw and b"something else" in raw
    raw = refused(ResponseProtocolError(1, "bad", ErrorCode.GENERIC_CLIENT_ERROR))
    assert raw.startswith(b"HTTP/1.1 400") and b"text/html" in raw


@pytest.fixture
def never_installed(monkeypatch):
    """The process as if the seam had never been installed (an earlier test of this process may have)."""
    monkeypatch.setattr(fingerprint, "_told", set())
    monkeypatch.setattr(fingerprint, "decided", {})
    if body_limit._original:
        monkeypatch.setattr(_http1, "make_error_response", body_limit._original[0])
    monkeypatch.setattr(body_limit, "_original", [])


def test_on_another_mitmproxy_the_seam_says_so_once_and_changes_nothing(never_installed, tmp_path, monkeypatch,
                                                                        caplog):
    other = another_mitmproxy.release("mitmproxy.proxy.layers.http._http1", tmp_path, monkeypatch)
    monkeypatch.setattr(_http1, "Http1Server", other.Http1Server)
    before = _http1.make_error_response
    with caplog.at_level(logging.WARNING, logger="qwen"):
        assert not body_limit.install(access.too_large_answer(1 << 20))
        assert not body_limit.install(access.too_large_answer(2 << 20))  # configure again: no second line
    assert _http1.make_error_response is before and not body_limit.installed()
    [line] = caplog.messages
    assert line.startswith("qwen: mitmproxy's 413 past body_size_limit in JSON: left out, as this mitmproxy")
    assert "(mitmproxy 12.2.3; changed: Http1Server)" in line and "mitmproxy's HTML 413 page" in line
