"""Who is at the other end (peers.py): key comparison, loopback, the listeners beyond it."""

from __future__ import annotations

import pytest
from mitmproxy.test import tflow

from qwen_gateway.peers import exposed_listeners, is_loopback, key_matches, peer_host


def test_key_matching_is_exact():
    keys = [b"k-one", b"k-two"]
    assert key_matches(b"k-two", keys) and not key_matches(b"k-tw", keys) and not key_matches(b"", keys)


@pytest.mark.parametrize("modes,host,exposed", [
    (["reverse:https://portal.qwen.ai"], "", False),  # the gateway binds loopback itself
    (["reverse:https://portal.qwen.ai@8080"], "0.0.0.0", True),
    (["regular@127.0.0.1:8080"], "0.0.0.0", False),
    (["regular@0.0.0.0:8080"], "", True),
    (["regular"], "::1", False),
    (["regular"], "192.168.1.5", True),
])
def test_exposed_listeners(modes, host, exposed):
    assert bool(exposed_listeners(modes, host)) is exposed


@pytest.mark.parametrize("host,loopback", [("localhost", True), ("127.0.0.2", True), ("::1", True),
                                           ("::ffff:127.0.0.1", True), ("fe80::1%eth0", False),
                                           ("10.0.0.1", False), ("not an address", False)])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_peer_host_is_the_client_address_or_empty():
    flow = tflow.tflow()
    flow.client_conn.peername = ("192.0.2.7", 4321)
    assert peer_host(flow) == "192.0.2.7"
    flow.client_conn.peername = None
    assert peer_host(flow) == ""
