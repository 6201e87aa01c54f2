"""What the terminal shows, read from a real mitmdump's whole output: the README's bare command starts
and stops without an error line or a traceback; mitmproxy's protocol debug never prints a client's
credential; a flow the gateway lets pass gets one line too."""

from __future__ import annotations

import http.server
import os
import re
import secrets
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from helpers import forkclient
from helpers.procs import ADDON, BIN, free_port

pytestmark = pytest.mark.e2e

# Anything that is not a calm start-up or shutdown line.
TROUBLE = re.compile(r"(?i)error|errno|traceback|failed|exception|cancelled")
STOPPED = re.compile(r"^\[[\d:.]+\] qwen: gateway stopped")


class Bare:
    """mitmdump exactly as the README starts it (no --listen-host), on a free port; HOME is the test's
    folder (mitmproxy's CA goes there), the accounts are the test's."""

    def __init__(self, workdir: Path, env: dict[str, str], *args: str) -> None:
        self.port = free_port()
        self.logfile = workdir / f"mitmdump-{self.port}.log"
        workdir.mkdir(parents=True, exist_ok=True)
        env = {**{k: v for k, v in os.environ.items() if "proxy" not in k.lower()}, **env, "HOME": str(workdir)}
        cmd = [str(BIN / "mitmdump"), "-s", str(ADDON), "--mode", "reverse:https://portal.qwen.ai",
               "-p", str(self.port), *args]
        with open(self.logfile, "w") as out:  # forked where it can: the same process (tests/e2e/test_forkserver.py)
            self.proc = forkclient.popen(cmd, env=env, cwd=str(workdir), log=out.fileno())
        self.url = f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.logfile.read_text()

    def wait_listening(self) -> None:
        """Until the listener is on loopback and the gateway said which accounts it loaded (or it failed)."""
        deadline = time.monotonic() + 30
        while True:
            text = self.output()
            if f"listening at 127.0.0.1:{self.port}" in text and "qwen: account" in text:
                return
            if TROUBLE.search(text) or self.proc.poll() is not None or time.monotonic() > deadline:
                return  # the test's assertions show the output
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def bare(tmp_path, oauth_home):
    started: list[Bare] = []

    def factory(*args: str) -> Bare:
        b = Bare(tmp_path / "home", oauth_home["env"], *args)
        started.append(b)
        return b

    yield factory
    for b in started:
        b.kill()


def test_the_readme_command_starts_and_stops_cleanly_five_times(bare, emu):
    for _ in range(5):
        gw = bare()
        gw.wait_listening()
        with httpx.Client(trust_env=False, timeout=10) as c:
            assert c.get(gw.url + "/health").status_code == 200, gw.output()
        assert gw.stop() == 0, gw.output()
        text = gw.output()
        assert not TROUBLE.search(text), text
        # one listening line, the loopback one: the bind on every interface that the gateway moves (ingress/
        # listeners.py) is not shown as a start, a stop and a second start, which reads like a crash
        listening = [ln.split("] ", 1)[1] for ln in text.splitlines() if " listening at " in ln]
        assert listening == [f"reverse proxy to https://portal.qwen.ai listening at 127.0.0.1:{gw.port}."], text
        assert not [ln for ln in text.splitlines() if ln.endswith(" stopped.")], text
        assert sum(bool(STOPPED.match(ln)) for ln in text.splitlines()) == 1, text


def _keep_alive_client(gw: Bare) -> socket.socket:
    """A client that got its answer and keeps the connection open (HTTP/1.1 keep-alive)."""
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert s.recv(65536).startswith(b"HTTP/1.1 200"), gw.output()
    return s


def _client_in_a_stream(gw: Bare) -> socket.socket:
    """A client whose streamed answer has begun and is still going (the emulator stalls after the first
    event)."""
    body = b'{"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    got = b""
    while b"data:" not in got:
        chunk = s.recv(65536)
        assert chunk, gw.output()
        got += chunk
    assert got.startswith(b"HTTP/1.1 200"), got
    return s


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
@pytest.mark.parametrize("client", [_keep_alive_client, _client_in_a_stream], ids=["keep-alive", "stream"])
def test_stopping_with_a_client_connected_ends_cleanly(bare, emu, sig, client):
    emu.fault("stall", seconds=5)  # only a stream meets it
    gw = bare()
    gw.wait_listening()
    s = client(gw)
    try:
        before = len(gw.output())
        assert gw.stop(sig) == 0, gw.output()
        s.settimeout(5)
        while s.recv(65536):  # the gateway closed the connection: the client reads its end
            pass
    finally:
        s.close()
    text = gw.output()
    assert not re.search(r"(?i)traceback|cancelled|exception", text), text
    after = [ln for ln in text[before:].splitlines() if "stopped" in ln]
    assert len(after) == 1 and STOPPED.match(after[0]), text


def test_proxy_debug_never_prints_a_client_credential(bare, emu):
    key, cookie, api_key = (f"sk-unique-{secrets.token_hex(8)}", f"sess-{secrets.token_hex(8)}",
                            f"ak-{secrets.token_hex(8)}")
    gw = bare("--set", "proxy_debug=true", "--set", "termlog_verbosity=debug")
    gw.wait_listening()
    with httpx.Client(trust_env=False, timeout=10) as c:  # an unchanged client: its real key, its cookie
        r = c.post(gw.url + "/v1/chat/completions", headers={
            "Authorization": f"Bearer {key}", "Cookie": f"session={cookie}", "x-api-key": api_key,
            "Proxy-Authorization": f"Basic {api_key}"},
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "debug"}]})
        assert r.status_code == 200, r.text
    assert gw.stop() == 0
    text = gw.output()
    assert "DataReceived(client" in text, text[-3000:]  # mitmproxy's protocol debug was on
    for secret in (key, cookie, api_key):
        assert secret not in text, [ln for ln in text.splitlines() if secret in ln][:3]
    assert re.search(r"qwen: WARNING: proxy_debug .*secret", text), text[:3000]


class Origin:
    """A host the gateway does not intercept: a loopback HTTP server the test runs."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b"hello"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_flows_the_gateway_lets_pass_get_one_line_each(make_gateway, emu, oauth_home):
    gw = make_gateway("passing", mode="regular", env=oauth_home["env"])
    origin, dead = Origin(), free_port()  # nothing listens on `dead`: connection refused
    try:
        with httpx.Client(proxy=gw.url, trust_env=False, timeout=10) as c:
            assert c.get(f"http://127.0.0.1:{origin.port}/hello?api_key=query-secret-1",
                         headers={"Authorization": "Bearer header-secret-12345"}).text == "hello"
            assert c.get(f"http://127.0.0.1:{dead}/nowhere?token=query-secret-2").status_code == 502
    finally:
        origin.close()
    lines: list[str] = []
    deadline = time.monotonic() + 10
    while len(lines) < 2 and time.monotonic() < deadline:
        lines = [ln for ln in gw.log().splitlines() if " passed " in ln]
        time.sleep(0.05)
    text = gw.log()
    assert re.fullmatch(rf"\[[\d:.]+\] GET http://127\.0\.0\.1:{origin.port}/hello passed 200 total=\d+ms",
                        lines[0]), text
    assert re.fullmatch(rf"\[[\d:.]+\] GET http://127\.0\.0\.1:{dead}/nowhere passed 502 total=\d+ms "
                        r"error=[\"'].*(Connect call failed|[Cc]onnection refused).*[\"']", lines[1]), text
    assert len(lines) == 2, text
    assert "secret" not in text, text
