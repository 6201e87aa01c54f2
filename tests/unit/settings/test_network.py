"""The gateway's calls to Qwen on a real network (settings/network.py, upstream/client.py): which proxy, which CAs,
CONNECT tunnels kept in the pool, and a proxy's refusal or an untrusted certificate named, never a
credential. In-process loopback servers; tests/e2e/test_e2e_network.py drives real mitmdump proxies."""

from __future__ import annotations

import asyncio
import base64
import ssl
from types import SimpleNamespace

import pytest
from mitmproxy import exceptions

from helpers import testca
from qwen_gateway.settings import config, network
from qwen_gateway.auth import oauth
from qwen_gateway.settings.auth import AuthSettings
from qwen_gateway.upstream.client import ProxyRefused, UntrustedCertificate, UpstreamClient

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
              "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUEST_METHOD")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


def opts(tmp_path, **kw) -> SimpleNamespace:
    """mitmproxy's options the network settings read, at their defaults."""
    values = dict(mode=["reverse:https://portal.qwen.ai"], listen_port=None, upstream_auth=None, ssl_insecure=False,
                  ssl_verify_upstream_trusted_ca=None, ssl_verify_upstream_trusted_confdir=None,
                  confdir=str(tmp_path / "conf"))
    values.update(kw)
    return SimpleNamespace(**values)


# ---- which proxy ----------------------------------------------------------------------------------------


def test_no_proxy_settings_mean_a_direct_connection(tmp_path):
    net = network.from_options(opts(tmp_path))
    assert net.proxy_for("https", "dashscope.aliyuncs.com", 443) is None
    assert net.warnings == ()


def test_https_proxy_with_credentials_becomes_basic_auth_never_shown(tmp_path, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://alice:p%40ss-w0rd@proxy.corp:3128")
    proxy = network.from_options(opts(tmp_path)).proxy_for("https", "dashscope.aliyuncs.com", 443)
    assert proxy is not None and (proxy.host, proxy.port, proxy.source) == ("proxy.corp", 3128, "HTTPS_PROXY")
    assert proxy.authorization == "Basic " + base64.b64encode(b"alice:p@ss-w0rd").decode()
    assert proxy.shown == "http://proxy.corp:3128 (with credentials)"
    assert "w0rd" not in repr(proxy) and "w0rd" not in repr(network.from_options(opts(tmp_path)))


def test_lower_case_and_all_proxy_are_read_as_curl_reads_them(tmp_path, monkeypatch):
    monkeypatch.setenv("ALL_PROXY", "http://all.corp:8000")
    net = network.from_options(opts(tmp_path))
    assert net.proxy_for("https", "qwen", 443).source == "ALL_PROXY"
    monkeypatch.setenv("https_proxy", "proxy.corp:3128")  # no scheme: http://, as curl assumes
    proxy = network.from_options(opts(tmp_path)).proxy_for("https", "qwen", 443)
    assert (proxy.host, proxy.port, proxy.source) == ("proxy.corp", 3128, "HTTPS_PROXY")
    # a plain-http upstream uses HTTP_PROXY (else ALL_PROXY), not HTTPS_PROXY
    assert network.from_options(opts(tmp_path)).proxy_for("http", "qwen", 80).source == "ALL_PROXY"


@pytest.mark.parametrize("no_proxy,host,port,bypassed", [
    ("*", "dashscope.aliyuncs.com", 443, True),
    ("aliyuncs.com", "dashscope.aliyuncs.com", 443, True),
    (".aliyuncs.com", "dashscope.aliyuncs.com", 443, True),
    ("aliyuncs.com", "notaliyuncs.com", 443, False),
    ("localhost,127.0.0.1", "127.0.0.1", 9999, True),
    ("10.0.0.0/8", "10.1.2.3", 443, True),
    ("10.0.0.0/8", "11.1.2.3", 443, False),
    ("::1", "::1", 443, True),
    ("qwen.corp:8443", "qwen.corp", 8443, True),
    ("qwen.corp:8443", "qwen.corp", 443, False),
    ("", "qwen.corp", 443, False),
])
def test_no_proxy_as_curl_and_httpx_read_it(tmp_path, monkeypatch, no_proxy, host, port, bypassed):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    assert (network.from_options(opts(tmp_path)).proxy_for("https", host, port) is None) is bypassed


def test_mitmproxys_upstream_mode_wins_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://env.corp:3128")
    monkeypatch.setenv("NO_PROXY", "*")
    net = network.from_options(opts(tmp_path, mode=["upstream:http://10.9.9.9:3128"], upstream_auth="bob:s3cret"))
    proxy = net.proxy_for("https", "dashscope.aliyuncs.com", 443)
    assert (proxy.host, proxy.port, proxy.source) == ("10.9.9.9", 3128, "--mode upstream")
    assert proxy.authorization == "Basic " + base64.b64encode(b"bob:s3cret").decode()
    assert net.proxy_url("https://chat.qwen.ai") == "http://bob:s3cret@10.9.9.9:3128"  # for httpx (OAuth)


def test_a_proxy_variable_naming_the_gateways_own_listener_is_ignored(tmp_path, monkeypatch):
    """The explicit-proxy recipe exports HTTPS_PROXY=http://127.0.0.1:8080 for the clients; the gateway
    started in that shell must not send Qwen's traffic into itself."""
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:8080")
    net = network.from_options(opts(tmp_path, mode=["regular"], listen_port=8080))
    assert net.proxy_for("https", "dashscope.aliyuncs.com", 443) is None
    assert net.warnings and "own listener" in net.warnings[0]
    # another port on loopback is a real proxy (a local corporate agent, say)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    assert network.from_options(opts(tmp_path, mode=["regular"], listen_port=8080)).proxy_for("https", "q", 443)


def test_other_proxy_variables_are_not_read(tmp_path, monkeypatch):
    monkeypatch.setenv("npm_config_https_proxy", "socks5://proxy:1080")  # another program's: never refused
    monkeypatch.setenv("GIT_PROXY", "not a url")
    assert network.from_options(opts(tmp_path)).proxy_for("https", "q", 443) is None
    monkeypatch.setenv("HTTPS_PROXY", "socks5://proxy:1080")  # under --mode upstream the environment is not read
    assert network.from_options(opts(tmp_path, mode=["upstream:http://10.9.9.9:3128"])).proxy_for("https", "q", 443)


@pytest.mark.parametrize("value", ["socks5://user:hunter2@proxy:1080", "https://user:hunter2@proxy:3128",
                                   "http://user:hunter2@proxy:notaport"])
def test_a_proxy_the_gateway_cannot_use_stops_it_at_start_without_the_password(tmp_path, monkeypatch, value):
    monkeypatch.setenv("HTTPS_PROXY", value)
    with pytest.raises(network.NetworkSettingError) as e:
        network.from_options(opts(tmp_path))
    assert "HTTPS_PROXY" in str(e.value) and "hunter2" not in str(e.value)


# ---- which CAs -----------------------------------------------------------------------------------------


def test_trust_order_mitmproxy_option_then_ssl_cert_file_then_certifi(tmp_path, monkeypatch):
    certs = testca.make(tmp_path / "ca")
    other = testca.make(tmp_path / "other")
    assert network.from_options(opts(tmp_path)).ca_file is None  # certifi's roots
    monkeypatch.setenv("SSL_CERT_FILE", str(other.ca))
    assert network.from_options(opts(tmp_path)).ca_file == str(other.ca)
    net = network.from_options(opts(tmp_path, ssl_verify_upstream_trusted_ca=str(certs.ca)))
    assert net.ca_file == str(certs.ca)
    assert net.ssl_context().verify_mode == ssl.CERT_REQUIRED


def test_ssl_cert_file_naming_the_gateways_own_ca_is_ignored(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    certs = testca.make(conf)
    (conf / "mitmproxy-ca-cert.pem").write_bytes(certs.ca.read_bytes())
    monkeypatch.setenv("SSL_CERT_FILE", str(conf / "mitmproxy-ca-cert.pem"))
    net = network.from_options(opts(tmp_path))
    assert net.ca_file is None and "own CA" in net.warnings[0]


def test_ssl_insecure_turns_verification_off_and_says_so(tmp_path):
    net = network.from_options(opts(tmp_path, ssl_insecure=True))
    assert net.ssl_context().verify_mode == ssl.CERT_NONE
    assert [w for w in net.warnings if "NOT verified" in w]


def test_a_ca_file_that_cannot_be_read_stops_the_gateway(tmp_path):
    with pytest.raises(network.NetworkSettingError, match="cannot load the trusted CAs"):
        network.from_options(opts(tmp_path, ssl_verify_upstream_trusted_ca=str(tmp_path / "missing.pem")))


def test_the_oauth_calls_get_the_same_proxy_and_cas(tmp_path, monkeypatch):
    certs = testca.make(tmp_path / "ca")
    monkeypatch.setenv("HTTPS_PROXY", "http://u:pw@proxy.corp:3128")
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))
    from mitmproxy.options import Options

    from qwen_gateway.addon import QwenGateway
    o = Options()
    QwenGateway().load(o)
    o.update(confdir=str(tmp_path / "conf"), qwen_state_dir=str(tmp_path / "state"))
    auth = config.parse(o).auth
    assert (auth.proxy, auth.ca_file, auth.tls_verify) == ("http://u:pw@proxy.corp:3128", str(certs.ca), True)
    assert "pw@" not in repr(auth)
    client = oauth.client(auth)
    try:
        assert client._mounts  # the proxy is mounted for the OAuth server's scheme
    finally:
        asyncio.run(client.aclose())
    monkeypatch.setenv("NO_PROXY", "chat.qwen.ai")
    assert config.parse(o).auth.proxy is None
    monkeypatch.setenv("HTTPS_PROXY", "socks5://proxy:1080")
    with pytest.raises(exceptions.OptionsError, match="HTTPS_PROXY"):
        config.parse(o)


def test_auth_settings_default_to_a_direct_verified_connection():
    s = AuthSettings.from_env()
    assert (s.proxy, s.ca_file, s.ca_dir, s.tls_verify) == (None, None, None, True)


# ---- the pool through a proxy ------------------------------------------------------------------------


class Origin:
    """A tiny keep-alive HTTP/1.1 server (TLS when given a context): answers every POST with `ok`."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.close()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0, ssl=self.tls)
        return self.server.sockets[0].getsockname()[1]


class ConnectProxy:
    """A tunnelling proxy: answers CONNECT with `answer` (200 opens the tunnel), records each CONNECT."""

    def __init__(self, answer: bytes = b"HTTP/1.1 200 Connection established\r\n\r\n") -> None:
        self.answer = answer
        self.connects: list[tuple[str, str | None]] = []  # (authority, Proxy-Authorization)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        lines = head.split("\r\n")
        auth = next((ln.split(":", 1)[1].strip() for ln in lines if ln.lower().startswith("proxy-authorization:")),
                    None)
        self.connects.append((lines[0].split()[1], auth))
        writer.write(self.answer)
        await writer.drain()
        if not self.answer.startswith(b"HTTP/1.1 200"):
            writer.close()
            return
        host, port = lines[0].split()[1].rsplit(":", 1)
        up_r, up_w = await asyncio.open_connection(host, int(port))

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except ConnectionError:
                pass
            finally:
                w.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]


def server_tls(certs: testca.Certs) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs.cert, certs.key)
    return ctx


async def post_n(client: UpstreamClient, url: str, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        resp = await client.send(url, [("host", "x")], b"{}", head_timeout=5, read_timeout=5)
        out.append(await resp.aread())
        await resp.aclose()
    return out


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_pooled_connections_are_tunnels_opened_once(tmp_path, monkeypatch, scheme):
    certs = testca.make(tmp_path / "ca")

    async def main() -> None:
        origin = Origin(server_tls(certs) if scheme == "https" else None)
        proxy = ConnectProxy()
        oport, pport = await origin.start(), await proxy.start()
        monkeypatch.setenv(f"{scheme.upper()}_PROXY", f"http://carol:tops3cret@127.0.0.1:{pport}")
        monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))
        client = UpstreamClient(keepalive=60, network=network.from_options(opts(tmp_path)))
        assert await post_n(client, f"{scheme}://127.0.0.1:{oport}/v1/chat/completions", 5) == [b"ok"] * 5
        await client.aclose()
        assert proxy.connects == [(f"127.0.0.1:{oport}", "Basic " + base64.b64encode(b"carol:tops3cret").decode())]
        assert origin.connections == 1
        proxy.server.close()
        origin.server.close()

    asyncio.run(main())


@pytest.mark.parametrize("answer,said", [
    (b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n",
     "407 Proxy Authentication Required"),
    (b"HTTP/1.1 403 Forbidden\r\n\r\n", "403 Forbidden"),
    (b"HTTP/1.1 502 Bad Gateway\r\n\r\n", "502 Bad Gateway"),
])
def test_a_proxy_refusing_connect_is_named_without_the_credentials(tmp_path, monkeypatch, answer, said):
    async def main() -> None:
        proxy = ConnectProxy(answer)
        pport = await proxy.start()
        monkeypatch.setenv("HTTPS_PROXY", f"http://dave:n0t-shown@127.0.0.1:{pport}")
        client = UpstreamClient(keepalive=60, network=network.from_options(opts(tmp_path)))
        with pytest.raises(ProxyRefused) as e:
            await post_n(client, "https://dashscope.example:443/v1/chat/completions", 1)
        assert said in str(e.value) and f"127.0.0.1:{pport}" in str(e.value)
        assert "n0t-shown" not in str(e.value) and "dave" not in str(e.value)
        proxy.server.close()

    asyncio.run(main())


def test_an_untrusted_certificate_is_a_clear_error_naming_the_fix(tmp_path):
    certs = testca.make(tmp_path / "ca")

    async def main() -> None:
        origin = Origin(server_tls(certs))
        oport = await origin.start()
        client = UpstreamClient(keepalive=60, network=network.from_options(opts(tmp_path)))  # certifi only
        with pytest.raises(UntrustedCertificate, match="SSL_CERT_FILE"):
            await post_n(client, f"https://127.0.0.1:{oport}/v1/chat/completions", 1)
        origin.server.close()

    asyncio.run(main())


def test_the_engine_says_ssl_insecure_once_and_rebuilds_its_pool_for_new_settings(tmp_path, caplog):
    import dataclasses

    from qwen_gateway import components
    from qwen_gateway.upstream.engine import UpstreamEngine
    from qwen_gateway.upstream.retry import RetryPolicy

    engine = UpstreamEngine(RetryPolicy(None), config.Config(), components.pairing(config.Config()))
    insecure = dataclasses.replace(config.Config(), network=network.from_options(opts(tmp_path, ssl_insecure=True)))
    with caplog.at_level("WARNING", logger="qwen"):
        stale = engine.reconfigure(insecure)
        assert stale is not None and engine.client.network.insecure  # a new pool with the new settings
        assert engine.reconfigure(dataclasses.replace(insecure, upstream_timeout=5)) is None  # same network
    assert [r.getMessage() for r in caplog.records if "ssl_insecure" in r.getMessage()] == [
        "qwen: ssl_insecure is on: the certificates of Qwen (and of any proxy inspecting TLS) are NOT verified"]
    asyncio.run(stale.aclose())
