"""A claimed flow's record (ingress/claim.py), with mitmproxy's test flows: the client's key never stays on the
flow (a hint of it on the record), the URL the client addressed is kept (reverse mode's own is a label), a
stream is pointed at the relay directly, and the flow shows what the client called once answered."""

from __future__ import annotations

import pytest
from mitmproxy import http
from mitmproxy.proxy import mode_specs
from mitmproxy.test import tflow

from qwen_gateway import components
from qwen_gateway.settings.config import Config
from qwen_gateway.ingress import access, claim
from qwen_gateway.turn.relay import TOKEN_HEADER


def claimed(reverse: bool):
    f = tflow.tflow()
    f.request = http.Request.make("POST", "https://portal.qwen.ai/v1/chat/completions", b"{}",
                                  [(b"authorization", b"Bearer sk-client-key-123")])
    f.request.headers["host"] = "127.0.0.1:8080"  # as the client wrote it
    if reverse:
        f.client_conn.proxy_mode = mode_specs.ProxyMode.parse("reverse:https://portal.qwen.ai")
        f.client_conn.sockname = ("127.0.0.1", 8080)
        f.client_conn.timestamp_tls_setup = None  # plain HTTP, as the reverse listener speaks
    head, without_key = access.read_head(f.request)
    ex = claim.open_exchange(f, head, without_key, components.endpoints(lambda: None), components.pairing(Config()).default)
    return f, ex


def test_the_record_keeps_a_hint_of_the_key_and_the_flow_none():
    f, ex = claimed(reverse=True)
    assert "authorization" not in f.request.headers and ex.client.key_hint == "sk-… (17 chars)"
    assert ex.route == "chat.completions" and ex.client.called == ("http", "127.0.0.1", 8080)
    assert ex.client.url == "http://127.0.0.1:8080/v1/chat/completions"


def test_a_stream_goes_to_the_relay_and_the_flow_shows_what_the_client_called():
    f, ex = claimed(reverse=True)
    claim.point_at_relay(f, ("qwen-relay.invalid", 1), "tok", TOKEN_HEADER)
    assert (f.request.scheme, f.request.host, f.request.port) == ("http", "qwen-relay.invalid", 1)
    assert f.server_conn.address == ("qwen-relay.invalid", 1) and f.request.headers[TOKEN_HEADER] == "tok"
    claim.show_as_called(f, ex)
    assert f.request.pretty_url == "http://127.0.0.1:8080/v1/chat/completions"


def test_other_hosts_pass_unless_client_keys_make_the_proxy_no_open_relay():
    assert not claim.no_passthrough(Config())
    assert claim.no_passthrough(Config(client_keys=(b"k",))) and claim.no_passthrough(Config(), named_keys=True)
    assert not claim.no_passthrough(Config(client_keys=(b"k",), allow_passthrough=True))


@pytest.mark.parametrize("version,authority", [("HTTP/1.1", b""), ("HTTP/2.0", b"127.0.0.1:8080")])
@pytest.mark.parametrize("hosts", [[], [b"127.0.0.1:8080"]])
def test_the_target_is_set_and_what_the_client_sent_as_host_kept(version, authority, hosts):
    req = http.Request("portal.qwen.ai", 443, b"POST", b"https", authority, b"/v1/chat/completions",
                       version.encode(), http.Headers([(b"host", h) for h in hosts]), b"{}", None, 1.0, 2.0)
    sent = (req.authority, req.headers.get_all("host"))
    claim.set_target(req, "http", "qwen-relay.invalid", 1)
    assert (req.scheme, req.host, req.port) == ("http", "qwen-relay.invalid", 1)
    claim.set_target(req, "https", "a.example", 8443)
    assert req.url == "https://a.example:8443/v1/chat/completions"
    assert (req.authority, req.headers.get_all("host")) == sent
