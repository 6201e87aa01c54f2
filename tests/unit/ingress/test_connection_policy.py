"""The perimeter (ingress/connection_policy.py), with mitmproxy's test connections: a listener beyond loopback closes its
clients while the gateway is loopback-only; a claimed flow's server connection reaches only the gateway's own
servers (reverse mode: nothing else at all; other modes: nothing for an intercepted name, its SNI, or an
address the intercepted names resolve to)."""

from __future__ import annotations

from mitmproxy.proxy import mode_specs, server_hooks
from mitmproxy.test import tflow

from qwen_gateway.settings.config import Config
from qwen_gateway.ingress.connection_policy import ConnectionPolicy

RELAY = ("qwen-relay.invalid", 1)


def connecting(address, *, mode: str = "regular", sni: str | None = None) -> server_hooks.ServerConnectionHookData:
    client, server = tflow.tclient_conn(), tflow.tserver_conn()
    client.proxy_mode = mode_specs.ProxyMode.parse(mode)
    server.address, server.sni = address, sni
    return server_hooks.ServerConnectionHookData(server=server, client=client)


def test_a_listener_beyond_loopback_is_refused_only_when_the_gateway_is_loopback_only():
    policy = ConnectionPolicy()
    assert not policy.refuses_client(("192.168.1.20", 8080))
    policy.loopback_only = True
    assert policy.refuses_client(("192.168.1.20", 8080)) and policy.refuses_client(("0.0.0.0", 8080))
    assert not policy.refuses_client(("127.0.0.1", 8080)) and not policy.refuses_client(("::1", 8080, 0, 0))


async def test_reverse_mode_reaches_no_server_but_the_gateways_own():
    policy, config = ConnectionPolicy(), Config()
    reverse = "reverse:https://portal.qwen.ai"
    assert await policy.refuses_server(connecting(("portal.qwen.ai", 443), mode=reverse), config, (RELAY,))
    assert await policy.refuses_server(connecting(("example.com", 443), mode=reverse), config, (RELAY,))
    assert not await policy.refuses_server(connecting(RELAY, mode=reverse), config, (RELAY,))


async def test_other_modes_never_reach_an_intercepted_name_sni_or_address(monkeypatch):
    policy, config = ConnectionPolicy(), Config()

    async def resolved(hosts):
        return frozenset({"203.0.113.7"})  # what api.openai.com resolves to, here
    monkeypatch.setattr(policy, "intercepted_addresses", resolved)
    for address, sni in ((("API.OpenAI.com.", 443), None), (("203.0.113.9", 443), "api.anthropic.com"),
                         (("203.0.113.7", 443), None)):
        assert await policy.refuses_server(connecting(address, sni=sni), config, (RELAY,)), (address, sni)
    assert not await policy.refuses_server(connecting(("example.com", 443), sni="example.com"), config, (RELAY,))


async def test_an_unresolvable_intercepted_name_resolves_to_nothing():
    policy = ConnectionPolicy()
    assert await policy.intercepted_addresses(frozenset({"qwen-test.invalid"})) == frozenset()
