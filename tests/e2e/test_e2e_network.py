"""Real networks: the gateway reaches Qwen (the emulator, served over TLS by a test CA) through a corporate
proxy — a second mitmdump on loopback, either inspecting TLS (re-signing with its own CA) or tunnelling
(`--ignore-hosts '.*'`, pure CONNECT) — chosen by HTTPS_PROXY / NO_PROXY or by mitmproxy's own
`--mode upstream:`; the CAs it trusts come from SSL_CERT_FILE or `ssl_verify_upstream_trusted_ca`.
Driven by openai-python (chat, whole and streamed)."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import websocket

from helpers import testca
from helpers.home import CODING_PLAN, Home
from e2e.test_e2e_responses_ws import turn, user
from helpers.procs import BIN, PORTFILE_ADDON, ROOT, Emulator, _stop, _wait_for_file, start_emulator, until, write_creds

pytestmark = pytest.mark.e2e
CONNECT_LOG_ADDON = ROOT / "tests" / "helpers" / "connect_log.py"
PROXY_USER, PROXY_PASSWORD = "corp-user", "pr0xy-s3cret-pw"


@dataclass
class CorpProxy:
    """A second mitmdump in regular mode: the corporate proxy."""
    proc: subprocess.Popen
    port: int
    workdir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ca(self) -> Path:  # what a TLS-inspecting proxy re-signs with
        return self.workdir / "conf" / "mitmproxy-ca-cert.pem"

    def connects(self) -> list[str]:
        path = self.workdir / "connects.log"
        return path.read_text().split() if path.exists() else []

    def log(self) -> str:
        return (self.workdir / "proxy.log").read_text()


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> testca.Certs:
    return testca.make(tmp_path_factory.mktemp("testca"))


@pytest.fixture(scope="module")
def tls_emulator(tmp_path_factory, certs):
    emu = start_emulator(tmp_path_factory.mktemp("tls-emulator"), "--tls-cert", str(certs.cert),
                         "--tls-key", str(certs.key))
    emu.url = f"https://127.0.0.1:{emu.port}"
    emu.http = httpx.Client(base_url=emu.url, timeout=10, trust_env=False,
                            verify=ssl.create_default_context(cafile=str(certs.ca)))
    yield emu
    emu.stop()


@pytest.fixture
def emu(tls_emulator: Emulator) -> Emulator:
    tls_emulator.reset()
    return tls_emulator


@pytest.fixture
def make_proxy(tmp_path, certs):
    started: list[CorpProxy] = []

    def start(name: str, *args: str) -> CorpProxy:
        workdir = tmp_path / name
        workdir.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env.update(QWEN_TEST_PORTFILE=str(workdir / "ports.json"), QWEN_TEST_CONNECT_LOG=str(workdir / "connects.log"))
        # it trusts the test CA, as a corporate proxy trusts the public roots Qwen's certificate chains to
        proc = subprocess.Popen([str(BIN / "mitmdump"), "--set", f"confdir={workdir / 'conf'}", "--mode",
                                 "regular@127.0.0.1:0", "--set", f"ssl_verify_upstream_trusted_ca={certs.ca}",
                                 "-s", str(PORTFILE_ADDON), "-s", str(CONNECT_LOG_ADDON), *args],
                                stdout=open(workdir / "proxy.log", "w"), stderr=subprocess.STDOUT, env=env)
        try:
            port = next(iter(json.loads(_wait_for_file(workdir / "ports.json", proc, "proxy")).values()))
        except BaseException:
            _stop(proc)
            raise
        proxy = CorpProxy(proc, port, workdir)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        _stop(proxy.proc)


def key_account(tmp_path: Path, emu: Emulator) -> dict[str, str]:
    """A key account whose base URL is the TLS emulator (as `qwen-auth add-key` writes it)."""
    home = Home(tmp_path, emu)
    home.key("emu", path=CODING_PLAN, default_model="qwen3-coder-plus")
    return home.env()


def client(gw, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-any", max_retries=0, timeout=30,
                         http_client=httpx.Client(trust_env=False, timeout=30), **kw)


def chat_both_ways(c: openai.OpenAI, text: str) -> None:
    """openai-python's chat, whole then streamed: both answered by the emulator."""
    whole = c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": text}])
    assert whole.choices[0].message.content == f"Echo: {text}"
    stream = c.chat.completions.create(model="gpt-4o", stream=True, messages=[{"role": "user", "content": text}])
    assert "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices) == f"Echo: {text}"


# ---- (a) a TLS-inspecting proxy -------------------------------------------------------------------------


@pytest.mark.parametrize("trust", ["SSL_CERT_FILE", "ssl_verify_upstream_trusted_ca"])
def test_through_a_tls_inspecting_proxy_once_its_ca_is_trusted(make_gateway, make_proxy, emu, tmp_path, trust):
    proxy = make_proxy("inspecting")
    env = {**key_account(tmp_path, emu), "HTTPS_PROXY": proxy.url}
    args: tuple[str, ...] = ()
    if trust == "SSL_CERT_FILE":
        env["SSL_CERT_FILE"] = str(proxy.ca)
    else:
        args = ("--set", f"ssl_verify_upstream_trusted_ca={proxy.ca}")
    gw = make_gateway("gw", env=env, args=args)
    chat_both_ways(client(gw), "inspected")
    # the proxy decrypted and saw the requests themselves
    assert proxy.log().count(f"POST {emu.url}/v1/chat/completions") == 2, proxy.log()
    assert len(emu.chat_requests()) == 2


def test_an_inspecting_proxy_whose_ca_is_not_trusted_is_a_clear_certificate_error(make_gateway, make_proxy, emu,
                                                                                  tmp_path):
    proxy = make_proxy("inspecting")
    gw = make_gateway("gw", env={**key_account(tmp_path, emu), "HTTPS_PROXY": proxy.url})
    with pytest.raises(openai.APIStatusError) as e:
        client(gw).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 502
    message = e.value.body["message"]
    assert "certificate of 127.0.0.1 is not trusted" in message and "SSL_CERT_FILE" in message, message
    assert e.value.body["code"] == "upstream_certificate"
    assert emu.chat_requests() == []


# ---- (b) a tunnelling proxy, (e) one CONNECT per pooled connection --------------------------------------


def tunnels(emu) -> list[str]:
    """The CONNECTs a gateway with one key account makes: the engine's one pooled tunnel, and the connection of its
    own that reads the key's model list when the gateway starts (dashscope/key_models.py), both through the proxy."""
    return [f"127.0.0.1:{emu.port}"] * 2


def test_https_proxy_tunnels_every_request_through_one_pooled_connect(make_gateway, make_proxy, emu, tmp_path,
                                                                     certs):
    proxy = make_proxy("tunnel", "--ignore-hosts", ".*")
    gw = make_gateway("gw", env={**key_account(tmp_path, emu), "HTTPS_PROXY": proxy.url,
                                 "SSL_CERT_FILE": str(certs.ca)})
    c = client(gw)
    for i in range(3):
        chat_both_ways(c, f"tunnelled {i}")
    assert len(emu.chat_requests()) == 6
    until(lambda: len(proxy.connects()) >= 2, "the key's list read")  # in the background, at start
    assert proxy.connects() == tunnels(emu)  # six requests, one CONNECT: the tunnel stays warm
    assert proxy.log().count(f"server connect 127.0.0.1:{emu.port}") == 2  # the proxy's own log says so too


def test_no_proxy_bypasses_the_proxy(make_gateway, make_proxy, emu, tmp_path, certs):
    proxy = make_proxy("tunnel", "--ignore-hosts", ".*")
    gw = make_gateway("gw", env={**key_account(tmp_path, emu), "HTTPS_PROXY": proxy.url, "NO_PROXY": "127.0.0.1",
                                 "SSL_CERT_FILE": str(certs.ca)})
    chat_both_ways(client(gw), "direct")
    assert len(emu.chat_requests()) == 2
    assert proxy.connects() == []


# ---- (c) mitmproxy's own upstream mode -------------------------------------------------------------------


def test_the_gateways_upstream_mode_sends_qwens_traffic_through_that_proxy(make_gateway, make_proxy, emu,
                                                                          tmp_path, certs):
    """The gateway as an explicit proxy whose own upstream is the corporate proxy: an unchanged client
    (api.openai.com through HTTPS_PROXY) is answered by Qwen reached through the corporate proxy; the
    gateway's loopback relay (streams) is not sent there."""
    proxy = make_proxy("tunnel", "--ignore-hosts", ".*")
    gw = make_gateway("gw", mode=f"upstream:{proxy.url}", env=key_account(tmp_path, emu),
                      args=("--set", f"ssl_verify_upstream_trusted_ca={certs.ca}"))
    c = openai.OpenAI(api_key="sk-unchanged", max_retries=0, timeout=30, http_client=httpx.Client(
        proxy=gw.url, trust_env=False, timeout=30, verify=ssl.create_default_context(cafile=str(gw.ca_cert))))
    chat_both_ways(c, "upstream mode")
    assert len(emu.chat_requests()) == 2
    until(lambda: len(proxy.connects()) >= 2, "the key's list read")
    assert proxy.connects() == tunnels(emu), gw.log()
    # the Responses WebSocket (Codex's first try) goes to the gateway's own loopback server, not the proxy
    ws = websocket.create_connection("wss://api.openai.com/v1/responses", timeout=15, http_proxy_host="127.0.0.1",
                                     http_proxy_port=gw.port, proxy_type="http",
                                     sslopt={"ca_certs": str(gw.ca_cert)}, header=["authorization: Bearer sk-x"])
    try:
        events = turn(ws, {"model": "gpt-4o", "input": [user("over the socket")]}, validate=False)
    finally:
        ws.close()
    assert events[-1]["type"] == "response.completed", events[-1]
    assert len(emu.chat_requests()) == 3


# ---- (d) proxy credentials ---------------------------------------------------------------------------------


def test_proxy_credentials_are_sent_and_never_shown(make_gateway, make_proxy, emu, tmp_path, certs):
    proxy = make_proxy("auth", "--ignore-hosts", ".*", "--proxyauth", f"{PROXY_USER}:{PROXY_PASSWORD}")
    account = key_account(tmp_path, emu)
    good = make_gateway("good", env={**account, "SSL_CERT_FILE": str(certs.ca),
                                     "HTTPS_PROXY": f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{proxy.port}"},
                        args=("-w", str(tmp_path / "good.flows"), "--set", "flow_detail=4"))
    chat_both_ways(client(good), "with credentials")
    until(lambda: len(proxy.connects()) >= 2, "the key's list read")
    assert proxy.connects() == tunnels(emu)

    wrong = f"{PROXY_PASSWORD}-but-wrong"
    bad = make_gateway("bad", env={**account, "SSL_CERT_FILE": str(certs.ca),
                                   "HTTPS_PROXY": f"http://{PROXY_USER}:{wrong}@127.0.0.1:{proxy.port}"},
                       args=("-w", str(tmp_path / "bad.flows"), "--set", "flow_detail=4"))
    with pytest.raises(openai.APIStatusError) as e:
        client(bad).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 502 and e.value.body["code"] == "upstream_proxy_refused"
    message = e.value.body["message"]
    assert f"the proxy http://127.0.0.1:{proxy.port} (with credentials) answered CONNECT 127.0.0.1:{emu.port} " \
           "with 407" in message, message
    for gw in (good, bad):
        gw.stop()  # the flows are written out
    seen = (good.log() + bad.log() + message).encode() + (tmp_path / "good.flows").read_bytes() \
        + (tmp_path / "bad.flows").read_bytes()
    assert b"Echo: with credentials" in seen  # the flows were written (and are what is searched)
    for secret in (PROXY_PASSWORD, wrong):
        assert secret.encode() not in seen
        assert base64.b64encode(f"{PROXY_USER}:{secret}".encode()) not in seen


# ---- the OAuth refresh takes the same way -----------------------------------------------------------------


def test_the_oauth_refresh_goes_through_the_proxy_and_trusts_the_same_cas(make_gateway, make_proxy, emu, tmp_path,
                                                                          certs):
    proxy = make_proxy("tunnel", "--ignore-hosts", ".*")
    issued = emu.admin("POST", "tokens", {"expires_in": 3600})
    write_creds(tmp_path / ".qwen", access_token="expired-" + issued["access_token"],
                refresh_token=issued["refresh_token"], resource_url=emu.url, expires_in=-60)
    gw = make_gateway("gw", env={"QWEN_DIR": str(tmp_path / ".qwen"), "QWEN_GATEWAY_HOME": str(tmp_path / "state"),
                                 "QWEN_OAUTH_BASE_URL": emu.url, "HOME": str(tmp_path),
                                 "HTTPS_PROXY": proxy.url, "SSL_CERT_FILE": str(certs.ca)})
    chat_both_ways(client(gw), "refreshed")
    assert [r["path"] for r in emu.requests() if "oauth2/token" in r["path"]] == ["/api/v1/oauth2/token"]
    # one tunnel for the refresh (the OAuth client), one for the chat requests (the engine's pool)
    assert proxy.connects() == [f"127.0.0.1:{emu.port}"] * 2, gw.log()
