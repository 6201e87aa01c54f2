"""A request's URL set in one write (seams/request_target.py; the URL a claimed flow shows once answered,
ingress/claim.show_as_called, and a stream pointed at the relay): written straight onto the request where
mitmproxy's setters would end in the same state, through the setters elsewhere and on other mitmproxy code.
Compared with the setters' result over the requests a client can send: HTTP/1 and HTTP/2, an authority or none, no, one or two Host
headers, names and addresses (IPv6 too) — the flow's whole state must be the same either way."""

from __future__ import annotations

import logging

import pytest
from mitmproxy import http
from mitmproxy.test import tflow

from qwen_gateway.ingress import claim
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.seams import fingerprint, request_target


def by_setters(flow: http.HTTPFlow, called: tuple[str, str, int]) -> None:
    """mitmproxy's own setters, the Host header put back."""
    req = flow.request
    shown = req.host_header
    req.scheme, req.host, req.port = called
    req.host_header = shown


def request(version: str, authority: bytes, hosts: list[bytes]) -> http.HTTPFlow:
    f = tflow.tflow()
    f.request = http.Request("portal.qwen.ai", 443, b"POST", b"https", authority, b"/v1/chat/completions",
                             version.encode(), http.Headers([(b"Host" if i else b"host", h)
                                                             for i, h in enumerate(hosts)] +
                                                            [(b"content-type", b"application/json")]),
                             b"{}", None, 1.0, 2.0)
    return f


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/2.0", "HTTP/3"])
@pytest.mark.parametrize("authority", [b"", b"127.0.0.1:8080"])
@pytest.mark.parametrize("hosts", [[], [b"127.0.0.1:8080"], [b"[::1]:8080"], [b"a.example", b"b.example"]])
@pytest.mark.parametrize("called", [("http", "127.0.0.1", 8080), ("https", "::1", 443), ("http", "a.example", 80)])
def test_the_flow_shows_what_the_setters_would_show(version, authority, hosts, called):
    fast, slow = request(version, authority, hosts), request(version, authority, hosts)
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://127.0.0.1:8080/v1/chat/completions"))
    ex.client.called = called
    claim.show_as_called(fast, ex)
    by_setters(slow, called)
    assert fast.request.get_state() == slow.request.get_state()
    assert fast.request.pretty_url == slow.request.pretty_url
    claim.show_as_called(fast, ex)  # a relayed answer shows it twice (responseheaders, response): the same
    assert fast.request.get_state() == slow.request.get_state()


def test_on_other_mitmproxy_code_the_setters_set_it(monkeypatch, caplog):
    monkeypatch.setattr(fingerprint, "_told", set())
    monkeypatch.setattr(request_target, "_fits", None)
    other = fingerprint.WrittenAgainst(request_target.WRITTEN.seam, request_target.WRITTEN.loses,
                                       (("mitmproxy.http:Request.host.fset", "0000000000000000"),))
    monkeypatch.setattr(request_target, "WRITTEN", other)
    writes = []
    monkeypatch.setattr(http.Request, "host", property(http.Request.host.fget,
                                                       lambda self, v: writes.append(v) or setattr(self.data, "host", v)))
    fast, slow = request("HTTP/1.1", b"", [b"127.0.0.1:8080"]), request("HTTP/1.1", b"", [b"127.0.0.1:8080"])
    with caplog.at_level(logging.WARNING, logger="qwen"):
        request_target.set_target(fast.request, "http", "127.0.0.1", 8080)
    assert writes == ["127.0.0.1"]  # through the setter
    assert "a request's URL set in one write: left out" in caplog.text
    by_setters(slow, ("http", "127.0.0.1", 8080))
    assert fast.request.data.host == slow.request.data.host and fast.request.scheme == slow.request.scheme
