"""The line a client that does not trust mitmproxy's CA gets logged (ingress/untrusted.py): the settings of the clients
that call the host, once an hour per host, never for a reverse listener or another kind of failure."""

from __future__ import annotations

from mitmproxy.connection import Client
from mitmproxy.proxy.mode_specs import ProxyMode

from qwen_gateway.ingress.untrusted import UntrustedCa
from qwen_gateway.log_tally import Once

DISTRUSTED = "The client does not trust the proxy's certificate for {} (tlsv1 alert unknown ca)"


def client(sni: str | None, error: str, mode: str = "regular") -> Client:
    c = Client(peername=("127.0.0.1", 5000), sockname=("127.0.0.1", 8080), timestamp_start=0.0,
               proxy_mode=ProxyMode.parse(mode))
    c.sni, c.error = sni, error.format(sni)
    return c


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_each_host_names_the_settings_of_its_clients():
    told = UntrustedCa()
    openai = told.line(client("api.openai.com", DISTRUSTED), "/conf")
    assert openai is not None and "for api.openai.com" in openai
    assert "CODEX_CA_CERTIFICATE=/conf/mitmproxy-ca-cert.pem (or SSL_CERT_FILE)" in openai
    assert "NODE_EXTRA_CA_CERTS" in openai and "REQUESTS_CA_BUNDLE" in openai
    anthropic = told.line(client("api.anthropic.com", DISTRUSTED), "/conf")
    assert anthropic is not None and "NODE_EXTRA_CA_CERTS=/conf/mitmproxy-ca-cert.pem" in anthropic
    assert "CODEX" not in anthropic
    codex_only = told.line(client("chatgpt.com", DISTRUSTED), "/conf")
    assert codex_only is not None and "CODEX_CA_CERTIFICATE" in codex_only and "NODE" not in codex_only


def test_once_an_hour_per_host():
    clock = Clock()
    once = Once(clock=clock)
    told = UntrustedCa(once)
    assert told.line(client("api.openai.com", DISTRUSTED), "/c")
    clock.now += once.period - 1
    assert told.line(client("api.openai.com", DISTRUSTED), "/c") is None
    assert told.line(client("example.com", DISTRUSTED), "/c")  # another host: its own line
    clock.now += 1
    assert told.line(client("api.openai.com", DISTRUSTED), "/c")
    for i in range(once.kept * 2):  # bounded however many hosts fail
        told.line(client(f"h{i}.example", DISTRUSTED), "/c")
    assert len(once.said) == once.kept


def test_not_a_distrusted_ca_or_a_reverse_listener_says_nothing():
    told = UntrustedCa()
    assert told.line(client("api.openai.com", DISTRUSTED, mode="reverse:https://portal.qwen.ai"), "/c") is None
    assert told.line(client("api.openai.com", "connection closed early"), "/c") is None
    assert told.line(client("api.openai.com", "Client and mitmproxy cannot agree on a TLS version"), "/c") is None
