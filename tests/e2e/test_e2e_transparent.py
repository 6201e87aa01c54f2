"""Transparent mode for real, and openai-python unchanged through both proxy modes.

Everything runs inside a network + mount namespace the test creates (tests/helpers/netns.py): there
api.openai.com resolves to 127.0.0.2, where a fake origin records every connection it accepts. The
gateway runs as `qwen-redirect run --port 8080 --group G -- mitmdump --mode transparent …`, so the
iptables rules are the ones qwen-redirect prints and docs/clients.md shows. Each test proves that no
connection reached the original destination: the fake origin accepted none, and mitmproxy opened no
upstream connection to its address (tests/helpers/portfile.py's connection log)."""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path

import pytest

from helpers.netns import (  # noqa: F401  (fixtures)
    BIN, CLIENT_KEY, OPENAI_ADDRESS, OTHER_ADDRESS, OTHER_HOST, PROXY_GID, PY, ROOT, World, client_env,
    explicit_gw, iptables_unavailable, mode_gw, proxy_world, redirect_wrap, transparent_gw, world)

pytestmark = pytest.mark.e2e

PYTHON_CLIENT = ROOT / "tests" / "clients" / "openai_python.py"


def python_env(world, gw, mode: str) -> dict:
    if mode == "explicit":
        return client_env(world.workdir, HTTPS_PROXY=gw.proxy_url, SSL_CERT_FILE=str(gw.ca_cert))
    return client_env(world.workdir, SSL_CERT_FILE=str(gw.ca_cert))  # transparent: only trust the CA


def test_openai_python_chat_and_stream_unchanged(mode_gw):
    mode, gw = mode_gw
    world = gw.world
    world.reset_emulator()
    mark = world.mark(gw)
    r = world.run_client([PY, PYTHON_CLIENT, f"python via {mode}"], python_env(world, gw, mode))
    assert r.returncode == 0, r.stderr + gw.log()[-3000:]
    out = json.loads(r.stdout)
    assert out["chat"] == f"Echo: python via {mode}"
    assert out["stream"] == f"Echo: python via {mode}" and out["chunks"] > 2
    chats = world.chat_requests()
    assert len(chats) == 2 and chats[1]["body"]["stream"] is True
    assert all(CLIENT_KEY not in json.dumps(c["headers"]) for c in chats)  # the client's key stays home
    assert world.leaks(gw, mark) == []
    # mitmproxy itself reached only the gateway's relay (streams); the engine talked to Qwen (the emulator)
    assert set(gw.connections()[mark[1]:]) <= {"relay"}


def test_curl_unchanged(mode_gw):
    """curl honours HTTPS_PROXY (explicit proxy) and needs nothing but the CA in transparent mode."""
    mode, gw = mode_gw
    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    world = gw.world
    mark = world.mark(gw)
    env = client_env(world.workdir, **({"HTTPS_PROXY": gw.proxy_url} if mode == "explicit" else {}))
    env["HTTP_PROXY"] = env["http_proxy"] = env.get("HTTPS_PROXY", "")
    for url in ("https://api.openai.com/v1/models", "http://api.openai.com/v1/models"):  # 443 and 80
        r = world.run_client(["curl", "-sS", "--fail", "--cacert", gw.ca_cert, url,
                              "-H", f"Authorization: Bearer {CLIENT_KEY}"], env, timeout=30)
        assert r.returncode == 0, url + r.stderr + gw.log()[-2000:]
        assert json.loads(r.stdout)["object"] == "list"
    assert world.leaks(gw, mark) == []


def test_namespace_has_its_own_hosts_file_and_leaves_the_hosts_untouched(world):
    r = world.ns.run([PY, "-c", "import socket; print(socket.gethostbyname('api.openai.com'))"], timeout=30)
    assert r.stdout.strip() == OPENAI_ADDRESS, r.stderr
    assert Path("/etc/hosts").read_bytes() == world.host_hosts  # as it was before the namespace existed
    try:
        outside = {ai[4][0] for ai in socket.getaddrinfo("api.openai.com", 443)}
    except socket.gaierror:
        outside = set()  # offline: no answer at all out here
    assert OPENAI_ADDRESS not in outside


def test_the_fake_origin_sees_a_client_that_bypasses_the_gateway(world, transparent_gw):
    """The proof works: a connection that is not redirected (the proxy's group is exempt) is counted."""
    before = len(world.origin_connections())
    code = (f"import os, socket; os.setgroups([]); os.setgid({PROXY_GID}); "
            "socket.create_connection(('api.openai.com', 443), timeout=10).close()")
    r = world.ns.run([PY, "-c", code], timeout=30)
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 5  # the fake origin logs from its own process: give it a moment
    while len(world.origin_connections()) < before + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(world.origin_connections()) == before + 1


@pytest.fixture
def own_world(tmp_path):
    if iptables_unavailable():
        pytest.skip(f"no iptables REDIRECT: {iptables_unavailable()}")
    w = World(tmp_path / "world").start()
    yield w
    w.stop()


def test_qwen_redirect_run_installs_the_printed_rules_and_removes_them_on_exit(own_world):
    world = own_world
    printed = world.ns.run([BIN / "qwen-redirect", "install", "--port", "8090", "--group", str(PROXY_GID),
                            "--chain", "QWEN_TEST", "--dry-run"], timeout=30)
    assert printed.returncode == 0, printed.stderr
    gw = world.gateway("redirect-run", "transparent", listen="127.0.0.1:8090",
                       wrap=redirect_wrap(8090, "--chain", "QWEN_TEST"))
    try:
        rules = world.iptables_rules()
        applied = [ln for ln in rules.splitlines() if "QWEN_TEST" in ln]
        # iptables -S spells the same rules in its own order of matches: compare as word sets
        expected = [ln.split(" ", 3)[3] for ln in printed.stdout.splitlines() if " -N " not in ln]
        assert sorted(map(_words, expected)) == sorted(_words(ln.replace("/32", "")) for ln in applied
                                                       if not ln.startswith("-N "))
        assert f"-d {OPENAI_ADDRESS}/32" in rules and f"--gid-owner {PROXY_GID} -j RETURN" in rules
        r = world.run_client([PY, PYTHON_CLIENT, "rules"], python_env(world, gw, "transparent"))
        assert r.returncode == 0 and json.loads(r.stdout)["chat"] == "Echo: rules", r.stderr
        assert world.leaks(gw, (0, 0)) == []
    finally:
        gw.stop()
    assert "QWEN_TEST" not in world.iptables_rules()
    assert gw.proc.returncode == 0, gw.log()[-2000:]  # SIGTERM forwarded, mitmdump stopped cleanly


def _words(rule: str) -> tuple:
    return tuple(sorted(rule.split()))


def test_proxy_own_traffic_is_not_redirected(own_world):
    """--all-hosts redirects every port-80/443 connection, mitmproxy's own upstream connections
    excepted: a host the gateway leaves alone (other.example) is reached through the proxy, once, and
    api.openai.com is still answered by Qwen. Without the owner exclusion the proxy would loop."""
    world = own_world
    gw = world.gateway("all", "transparent", wrap=redirect_wrap(8080, "--all-hosts"), listen="127.0.0.1:8080")
    code = f"import urllib.request; print(urllib.request.urlopen('http://{OTHER_HOST}/', timeout=20).read().decode())"
    r = world.run_client([PY, "-c", code], client_env(world.workdir))
    assert r.returncode == 0 and r.stdout.strip() == "hello from other", r.stderr + gw.log()[-3000:]
    assert len(world.other_connections()) == 1
    assert f"{OTHER_ADDRESS}:80" in gw.connections()  # it went through mitmproxy, not around it
    r = world.run_client([PY, PYTHON_CLIENT, "all hosts"], python_env(world, gw, "transparent"))
    assert r.returncode == 0 and json.loads(r.stdout)["stream"] == "Echo: all hosts", r.stderr
    assert world.leaks(gw, (0, 0)) == []


GUARD_CLIENT = """
import http.client, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
ctx.check_hostname = False  # the IP case has no name to check
c = http.client.HTTPSConnection(sys.argv[2], context=ctx, timeout=20)
c.request("GET", "/v1/models", headers={"Host": sys.argv[3]})
print(c.getresponse().status)
"""


@pytest.mark.parametrize("target,host", [("api.openai.com", "elsewhere.example"), (OPENAI_ADDRESS, OPENAI_ADDRESS)],
                         ids=["sni-api.openai.com-other-host-header", "address-only"])
def test_transparent_guard_never_connects_to_the_intercepted_address(world, transparent_gw, target, host):
    mark = world.mark(transparent_gw)
    r = world.run_client([PY, "-c", GUARD_CLIENT, transparent_gw.ca_cert, target, host], client_env(world.workdir))
    assert r.returncode == 0, r.stderr  # the client gets an answer (an error), from the gateway
    assert world.leaks(transparent_gw, mark) == []


OVERSIZED_HEAD_CLIENT = """
import json, openai
client = openai.OpenAI(max_retries=0, timeout=30, default_headers={"x-padding": "a" * (100 << 10)})
try:
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    print(json.dumps({"status": 200}))
except openai.APIStatusError as e:
    print(json.dumps({"status": e.status_code, "code": e.code}))
"""


def test_a_request_head_over_the_limit_is_a_431_through_both_modes(mode_gw):
    """openai-python, unchanged, with 100 KiB of headers: inside the CONNECT tunnel (explicit proxy) and the
    redirected TLS connection (transparent), the gateway's HTTP/1 reader refuses the head at 64 KiB."""
    mode, gw = mode_gw
    world = gw.world
    world.reset_emulator()
    mark = world.mark(gw)
    r = world.run_client([PY, "-c", OVERSIZED_HEAD_CLIENT], python_env(world, gw, mode))
    assert r.returncode == 0, r.stderr + gw.log()[-2000:]
    assert json.loads(r.stdout) == {"status": 431, "code": "request_header_fields_too_large"}
    assert world.chat_requests() == []
    assert world.leaks(gw, mark) == []
