"""mitmproxy's own options held to what the gateway needs (ingress/exposure.py), on mitmproxy's options in a
test context (taddons, with its proxy server addon's options): listening beyond loopback without client keys
refused unless accepted, reverse mode bounding uploads and never streaming requests past the gateway, the
client's Host kept, lazy connections, and proxy_debug's warning."""

from __future__ import annotations

import logging

import pytest
from mitmproxy import exceptions
from mitmproxy.addons import proxyserver
from mitmproxy.test import taddons

from qwen_gateway.ingress.exposure import enforce
from qwen_gateway.ingress.connection_policy import ConnectionPolicy
from qwen_gateway.settings.config import Config

REVERSE = "reverse:https://portal.qwen.ai@127.0.0.1:8080"
ALL = {"mode", "listen_host", "stream_large_bodies", "proxy_debug", "keep_host_header", "connection_strategy",
       "qwen_client_keys_file", "qwen_allow_open"}


@pytest.fixture
def tctx():
    """Its listeners named on loopback where a test does not say otherwise: never moved (a restart of listeners
    needs a running event loop)."""
    with taddons.context(proxyserver.Proxyserver()) as tctx:
        tctx.options.update(mode=["regular@127.0.0.1:8080"])
        yield tctx


def said(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "qwen"]


def test_listening_beyond_loopback_without_keys_is_refused_with_the_ways_out(tctx):
    tctx.options.update(mode=["regular"], listen_host="0.0.0.0")
    with pytest.raises(exceptions.OptionsError) as e:
        enforce(tctx.options, {"listen_host"}, Config(), ConnectionPolicy())
    assert str(e.value) == (
        "The Qwen gateway would listen beyond loopback without client keys: regular (on 0.0.0.0). Add named keys "
        "with qwen-keys add NAME, set $QWEN_GATEWAY_KEYS or --set qwen_client_keys_file=FILE, or --set "
        "qwen_allow_open=true to accept that anyone reaching the port spends your quota.")


@pytest.mark.parametrize("config,named", [(Config(client_keys=(b"sk-flat",)), False), (Config(allow_open=True), False),
                                          (Config(), True)])
def test_keys_or_consent_open_the_port(tctx, config, named):
    tctx.options.update(mode=["reverse:https://portal.qwen.ai@0.0.0.0:8080"])
    policy = ConnectionPolicy()
    policy.loopback_only = True
    enforce(tctx.options, {"mode"}, config, policy, named_keys=lambda: named)
    assert not policy.loopback_only


def test_named_keys_are_asked_only_when_a_listener_is_exposed(tctx):
    tctx.options.update(mode=["regular@127.0.0.1:8080"])
    asked: list = []
    enforce(tctx.options, {"mode"}, Config(), ConnectionPolicy(), named_keys=lambda: asked.append(1) or False)
    assert asked == []  # loopback: no need to read the keys store


def test_loopback_listeners_set_the_connection_policy():
    with taddons.context() as tctx:  # no proxy server to restart: the modes are only rewritten
        policy = ConnectionPolicy()
        enforce(tctx.options, {"mode"}, Config(), policy)
        assert policy.loopback_only and tctx.options.mode == ["regular@127.0.0.1:8080"]


def test_unrelated_updates_check_nothing(tctx):
    tctx.options.update(mode=["regular@0.0.0.0:8080"])
    enforce(tctx.options, {"qwen_model_map"}, Config(), ConnectionPolicy())  # no refusal: the listeners did not change


def test_reverse_mode_reads_every_request_and_bounds_uploads(tctx, caplog):
    tctx.options.update(mode=[REVERSE], stream_large_bodies="1m")
    with caplog.at_level(logging.WARNING, "qwen"):
        enforce(tctx.options, {"mode", "stream_large_bodies"}, Config(max_body=32 << 20), ConnectionPolicy())
    assert tctx.options.stream_large_bodies is None
    assert tctx.options.body_size_limit == "65m"  # twice the gateway's own limit, plus one
    assert said(caplog) == ["qwen: stream_large_bodies is ignored in reverse mode: the gateway reads each request"]


def test_a_users_body_size_limit_is_kept_and_other_modes_are_not_bounded(tctx):
    tctx.options.update(mode=[REVERSE], body_size_limit="10m")
    enforce(tctx.options, {"mode"}, Config(), ConnectionPolicy())
    assert tctx.options.body_size_limit == "10m"
    tctx.options.update(mode=[REVERSE, "regular@127.0.0.1:8081"], body_size_limit=None,
                        stream_large_bodies="5m")
    enforce(tctx.options, {"mode"}, Config(), ConnectionPolicy())
    assert (tctx.options.body_size_limit, tctx.options.stream_large_bodies) == (None, "5m")  # passthrough downloads


def test_host_header_and_lazy_connections_are_held(tctx):
    enforce(tctx.options, {"keep_host_header", "connection_strategy"}, Config(), ConnectionPolicy())
    assert (tctx.options.keep_host_header, tctx.options.connection_strategy) == (True, "lazy")


def test_proxy_debug_warns_that_secrets_may_show(tctx, caplog):
    tctx.options.update(proxy_debug=True)
    with caplog.at_level(logging.WARNING, "qwen"):
        enforce(tctx.options, {"proxy_debug"}, Config(), ConnectionPolicy())
        enforce(tctx.options, {"mode"}, Config(), ConnectionPolicy())  # said when it is set, not at every update
    assert len(said(caplog)) == 1
    assert said(caplog)[0].startswith("qwen: WARNING: proxy_debug logs the raw bytes of every request and answer, "
                                         "secrets included")


def test_everything_at_once_on_a_bare_context():
    """A context without the proxy server's options (bare tests): what is absent is skipped, not an error."""
    with taddons.context() as tctx:
        policy = ConnectionPolicy()
        enforce(tctx.options, {"mode", "listen_host", "proxy_debug"}, Config(), policy)
        assert policy.loopback_only


def test_all_changes_together(tctx):
    enforce(tctx.options, ALL, Config(), ConnectionPolicy())
    assert (tctx.options.keep_host_header, tctx.options.connection_strategy) == (True, "lazy")
