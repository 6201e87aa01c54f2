"""The upstream engine with real processes: warm pooled connections across client connections, retries
that stream like a first attempt, and no credential in any flow — in flight, in mitmweb, in -w files."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from helpers.procs import ROOT, _wait_for_file, free_port, mitmweb_api, write_creds

pytestmark = pytest.mark.e2e
PASSWORD = "engine-test"


@pytest.fixture
def far(emu, tmp_path):
    """The emulator behind a forwarder that logs every connection (and adds a small delay)."""
    log = tmp_path / "conns.log"
    portfile = tmp_path / "delay.port"
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "delay_proxy.py"), "--target",
                             f"127.0.0.1:{emu.port}", "--delay-ms", "5", "--port-file", str(portfile),
                             "--conn-log", str(log), "--lifetime", "120"])
    port = int(_wait_for_file(portfile, proc, "delay proxy"))
    yield f"http://127.0.0.1:{port}", log
    proc.terminate()
    proc.wait(5)


def home_at(tmp_path, emu, base_url: str) -> tuple[dict, str]:
    issued = emu.admin("POST", "tokens", {"expires_in": 3600})  # with a refresh token the emulator honours
    token = issued["access_token"]
    write_creds(tmp_path / ".qwen", access_token=token, refresh_token=issued["refresh_token"],
                resource_url=base_url)
    return {"QWEN_DIR": str(tmp_path / ".qwen"), "QWEN_GATEWAY_HOME": str(tmp_path / "state"),
            "QWEN_OAUTH_BASE_URL": emu.url, "HOME": str(tmp_path)}, token


def ask_on_new_connection(gw, text: str, stream: bool = False) -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=20) as c:  # a new client connection each time, like a CLI
        return c.post(gw.url + "/v1/chat/completions", headers={"connection": "close"},
                      json={"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": text}]})


def connections(log) -> int:
    return len(log.read_text().split()) if log.exists() else 0


@pytest.mark.parametrize("keepalive,expected", [("120", 1), ("0", 6)])
def test_new_client_connections_reuse_a_warm_upstream_connection(make_gateway, emu, far, tmp_path, keepalive,
                                                                 expected):
    url, log = far
    env, _ = home_at(tmp_path, emu, url)
    gw = make_gateway("warm", env=env, args=("--set", f"qwen_upstream_keepalive={keepalive}"))
    for i in range(6):
        r = ask_on_new_connection(gw, f"n{i}", stream=i % 2 == 1)
        assert r.status_code == 200, r.text
    assert len(emu.chat_requests()) == 6
    assert connections(log) == expected  # 6 client connections; with keep-alive one upstream connection


def test_a_retried_stream_arrives_chunk_by_chunk(make_gateway, emu, tmp_path):
    env, _ = home_at(tmp_path, emu, emu.url)
    gw = make_gateway("retry", env=env)
    emu.switches(gap_ms=150)
    emu.fault("auth401")
    arrivals: list[tuple[float, str]] = []
    t0 = time.monotonic()
    with httpx.stream("POST", gw.url + "/v1/chat/completions", trust_env=False, timeout=30, json={
            "model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "one two three four five"}]}
            ) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: {"):
                for c in json.loads(line[6:]).get("choices", []):
                    if c["delta"].get("content"):
                        arrivals.append((time.monotonic() - t0, c["delta"]["content"]))
    assert "".join(t for _, t in arrivals) == "Echo: one two three four five"
    assert len(emu.chat_requests()) == 2  # 401, refresh, then the stream
    # the retry's answer was streamed, not delivered whole: its pieces arrived over its 150 ms gaps
    assert len(arrivals) >= 5 and arrivals[-1][0] - arrivals[0][0] >= 0.5, arrivals


def _in_flight(gw, done: threading.Event, out: list) -> threading.Thread:
    def run():
        try:
            out.append(ask_on_new_connection(gw, "slow answer", stream=True).status_code)
        except httpx.HTTPError as e:
            out.append(type(e).__name__)
        done.set()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_mitmweb_never_shows_the_credential_while_a_request_is_in_flight(make_gateway, emu, tmp_path):
    env, token = home_at(tmp_path, emu, emu.url)
    web_port = free_port()
    gw = make_gateway("web", tool="mitmweb", env=env, args=(
        "--set", f"web_password={PASSWORD}", "--set", f"web_port={web_port}", "--set", "web_host=127.0.0.1"))
    api = mitmweb_api(gw, web_port, PASSWORD)
    emu.switches(first_byte_delay_ms=3000)
    done, out = threading.Event(), []
    _in_flight(gw, done, out)
    seen = ""
    deadline = time.monotonic() + 10
    while not done.is_set() and time.monotonic() < deadline:
        flows = api.get("/flows").text
        if "slow answer" in api.get("/flows/dump").text or "chat/completions" in flows:
            seen += flows + api.get("/flows/dump").text
        time.sleep(0.2)
    done.wait(15)
    assert out == [200]
    assert "chat/completions" in seen  # the flow was looked at while it was in flight
    assert token not in seen and token not in api.get("/flows/dump").text and token not in gw.log()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stopping_with_a_request_in_flight_writes_no_credential(make_gateway, emu, tmp_path, sig):
    env, token = home_at(tmp_path, emu, emu.url)
    dump = tmp_path / "flows.mitm"
    gw = make_gateway("w", env=env, args=("-w", str(dump)))
    emu.switches(first_byte_delay_ms=4000)
    done, out = threading.Event(), []
    _in_flight(gw, done, out)
    deadline = time.monotonic() + 10
    while not emu.chat_requests() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert emu.chat_requests(), "the request never reached the emulator"
    gw.proc.send_signal(sig)
    gw.proc.wait(15)
    done.wait(10)
    data = dump.read_bytes() if dump.exists() else b""
    assert b"slow answer" in data  # the in-flight flow was saved ...
    assert token.encode() not in data  # ... without the credential
