"""The URL a claimed flow shows once answered (door/claim.show_as_called): written straight onto the request
where mitmproxy's setters would end in the same state, through the setters elsewhere. Compared with the setters'
result over the requests a client can send: HTTP/1 and HTTP/2, an authority or none, no, one or two Host
headers, names and addresses (IPv6 too) — the flow's whole state must be the same either way."""

from __future__ import annotations

import pytest
from mitmproxy import http
from mitmproxy.test import tflow

from qwen_gateway.door import claim
from qwen_gateway.exchange import ClientRequest, Exchange


def by_setters(flow: http.HTTPFlow, called: tuple[str, str, int]) -> None:
    """What show_as_called did before, through mitmproxy's own setters."""
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
    ex.called = called
    claim.show_as_called(fast, ex)
    by_setters(slow, called)
    assert fast.request.get_state() == slow.request.get_state()
    assert fast.request.pretty_url == slow.request.pretty_url
    claim.show_as_called(fast, ex)  # a relayed answer shows it twice (responseheaders, response): the same
    assert fast.request.get_state() == slow.request.get_state()
