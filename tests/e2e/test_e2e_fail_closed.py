"""Fail closed by construction, with real processes: an exception injected into a step of the gateway
(once) gives the client an OpenAI-format error, nothing reaches the original destination, and the next
request is served. Reverse mode (the original destination is a listener the test runs) and explicit proxy
mode (every server connection mitmproxy tries is logged; only the gateway's relay may appear)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

INJECT = Path(__file__).parents[1] / "helpers" / "inject.py"
STEPS = [
    "qwen_gateway.ingress.routing:claims",
    "qwen_gateway.ingress.routing:route",
    "qwen_gateway.tenancy.team:Team.check",
    "qwen_gateway.tenancy.team:Team.limit",
    "qwen_gateway.ingress.body:parse_json",
    "qwen_gateway.wiring:context_check",
    "qwen_gateway.api.chat:validate_chat_request",
    "qwen_gateway.upstream.dashscope.request:chat_to_qwen",
    "qwen_gateway.upstream.engine:UpstreamEngine.open",
    "qwen_gateway.turn.whole_answer:translated",
    "qwen_gateway.turn.whole_answer:stream_rewriter",
    "qwen_gateway.local_answers:LocalAnswers.answer",
]


class Target:
    """The original destination: counts every connection and every byte it is sent."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.received = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.settimeout(0.5)
            try:
                self.received += conn.recv(65536)
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def target():
    t = Target()
    yield t
    t.close()


def text_of(r: httpx.Response) -> str:
    """The answer's text, whole or assembled from a stream."""
    import json
    if not r.headers.get("content-type", "").startswith("text/event-stream"):
        return json.loads(r.text)["choices"][0]["message"]["content"]
    parts = []
    for line in r.text.splitlines():
        if line.startswith("data: {"):
            for c in json.loads(line[6:]).get("choices", []):
                parts.append(c.get("delta", {}).get("content") or "")
    return "".join(parts)


def chat(url: str, stream: bool, **kw) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", timeout=20, **kw, json={
        "model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": "secret prompt"}]},
        headers={"authorization": "Bearer sk-client-key"})


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("step", STEPS)
def test_reverse_mode(make_gateway, emu, oauth_home, target, step, stream):
    gw = make_gateway("rev", mode=f"reverse:http://127.0.0.1:{target.port}",
                      env={**oauth_home["env"], "QWEN_TEST_INJECT": step}, args=("-s", str(INJECT)), connlog=True)
    first = chat(gw.url, stream, trust_env=False)
    second = chat(gw.url, stream, trust_env=False)
    for r in (first, second):
        assert r.status_code == 200 or set(r.json()["error"]) == {"message", "type", "param", "code"}, r.text
    assert second.status_code == 200 and text_of(second) == "Echo: secret prompt"
    assert target.connections == 0 and target.received == b""
    assert set(gw.connections()) <= {"relay"}


SCRIPT = textwrap.dedent("""
    import httpx, sys
    for stream in (False, True):
        r = httpx.post("https://api.openai.com/v1/chat/completions", timeout=20, headers={"authorization":
            "Bearer sk-client-key"}, json={"model": "gpt-4o", "stream": stream, "messages": [{"role": "user",
            "content": "secret prompt"}]})
        text = r.text if not stream else "".join(
            (c.get("delta") or {}).get("content") or "" for line in r.text.splitlines() if line.startswith("data: {")
            for c in __import__("json").loads(line[6:]).get("choices", []))
        print(r.status_code, "Echo: secret prompt" in text, r.headers.get("content-type", ""))
""")


@pytest.mark.parametrize("step", STEPS)
def test_explicit_proxy_mode(make_gateway, emu, oauth_home, step):
    gw = make_gateway("reg", mode="regular", env={**oauth_home["env"], "QWEN_TEST_INJECT": step},
                      args=("-s", str(INJECT)), connlog=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(HTTPS_PROXY=gw.url, SSL_CERT_FILE=str(gw.ca_cert))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr + gw.log()
    lines = out.stdout.split("\n")[:2]
    assert all(line.split()[0] in ("200", "400", "500", "502") for line in lines), lines
    assert any(line.startswith("200 True") for line in lines), lines  # served once the step works again
    assert set(gw.connections()) <= {"relay"}, gw.connections()
