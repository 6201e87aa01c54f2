"""Hostile or sloppy clients against a real mitmdump (reverse mode unless said): a request head of 100 MiB,
bytes piped ahead of an answer, an endless chunk-size line, slow heads (slowloris), silent and idle
connections, and more slow clients than the process has file descriptors. Each is refused or closed with
its memory bounded, the log says so in a few lines, and the gateway serves the next client. Long answers
(a stream, a WebSocket session) outlive the head timeout."""

from __future__ import annotations

import json
import os
import re
import select
import socket
import ssl
import subprocess
import time

import httpx
import openai
import pytest
import websocket

from helpers.procs import ROOT
from helpers.team import anthropic_driver
from e2e.test_e2e_attacks import CHAT, rss_mb, serving

pytestmark = pytest.mark.e2e

CHUNK = 64 << 10
# RSS is measured: tiktoken's tables (~40 MB, loaded in a thread after the first request) would blur it
NO_TOKENIZER = ("--set", "qwen_token_count=false")


def _read_answer(s: socket.socket, timeout: float = 10) -> bytes:
    """Everything the gateway sends until it closes the connection (or `timeout` passes)."""
    data = b""
    deadline = time.monotonic() + timeout
    s.setblocking(True)
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            part = s.recv(65536)
        except (TimeoutError, OSError):
            break
        if not part:
            break
        data += part
    return data


def flood(port: int, start: bytes, total: int, *, then: bytes = b"") -> tuple[bytes, int]:
    """Send `start`, then up to `total` bytes of b"a" in 64 KiB pieces, then `then`, reading whatever the
    gateway says meanwhile. Returns (what the gateway said, bytes sent) once it answered or `total` is out."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(start)
        piece = b"a" * CHUNK
        try:
            for _ in range(total // CHUNK):
                if select.select([s], [], [], 0)[0]:
                    break  # the gateway answered (or closed): stop sending
                s.sendall(piece)
                sent += CHUNK
            else:
                s.sendall(then)
        except OSError:
            pass  # the gateway closed the connection while we were still sending
        return _read_answer(s), sent


def warm_rss(gw) -> float:
    """The gateway's RSS once it has served a request (its first one loads what requests need)."""
    assert serving(gw)
    return rss_mb(gw.proc.pid)


def status_and_body(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def test_a_100_mib_request_head_is_431_in_openai_format_and_never_held(make_gateway, emu, oauth_home):
    gw = make_gateway("head", env=oauth_home["env"], args=NO_TOKENIZER, fork=False)  # Popen: its RSS is read
    before = warm_rss(gw)
    start = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\n"
             "Content-Type: application/json\r\nX-Padding: ").encode()
    body = json.dumps(CHAT).encode()
    answer, sent = flood(gw.port, start, 100 << 20, then=b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    grown = rss_mb(gw.proc.pid) - before
    status, error = status_and_body(answer)
    assert status == 431, answer[:300]
    assert error["error"]["code"] == "request_header_fields_too_large"
    assert "64 KiB" in error["error"]["message"] and "qwen_max_header_kb" in error["error"]["message"]
    assert b"connection: close" in answer.lower()
    assert sent < 4 << 20  # refused as soon as the head outgrew the limit, not after 100 MiB
    assert grown < 30, f"RSS grew by {grown:.0f} MB"
    assert len(emu.chat_requests()) == 1  # the warm-up's
    assert serving(gw)
    log = gw.log()
    assert "request head over 64 KiB" in log and "Traceback" not in log


def test_the_openai_sdk_reads_the_431_of_a_head_over_the_limit(make_gateway, emu, oauth_home):
    gw = make_gateway("sdk", env=oauth_home["env"], args=("--set", "qwen_max_header_kb=16"))
    big = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0, timeout=30,
                        default_headers={"x-padding": "a" * (20 << 10)})
    with pytest.raises(openai.APIStatusError) as e:
        big.chat.completions.create(**CHAT)
    assert e.value.status_code == 431 and e.value.code == "request_header_fields_too_large"
    assert "16 KiB" in e.value.message
    small = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0, timeout=30,
                          default_headers={"x-padding": "a" * (12 << 10)})  # under the limit: served
    assert small.chat.completions.create(**CHAT).choices[0].message.content == "Echo: hi"
    assert len(emu.chat_requests()) == 1  # the small one's: the refused request reached nothing


def test_the_openai_sdk_reads_a_json_413_for_a_body_past_mitmproxys_limit(make_gateway, emu, oauth_home):
    """Past mitmproxy's body_size_limit (reverse mode: twice qwen_max_body_mb and 1 MiB) mitmproxy answers
    before any hook can: its 413 is in the gateway's JSON, not mitmproxy's HTML page."""
    gw = make_gateway("body413", env=oauth_home["env"], args=("--set", "qwen_max_body_mb=1"))
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0, timeout=30)
    for size in (2 << 20, 5 << 20):  # the gateway's own refusal, then mitmproxy's (over 3 MiB)
        with pytest.raises(openai.APIStatusError) as e:
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x" * size}])
        assert e.value.status_code == 413 and e.value.code == "request_too_large", (size, e.value.response.text[:300])
        assert "1 MiB (qwen_max_body_mb)" in e.value.message
    assert client.chat.completions.create(**CHAT).choices[0].message.content == "Echo: hi"
    assert len(emu.chat_requests()) == 1


ANTHROPIC_PY = ROOT / ".tools" / "anthropic-venv" / "bin" / "python"


@pytest.mark.skipif(not ANTHROPIC_PY.exists(), reason="anthropic SDK not installed "
                    "(scripts/install-test-tools.sh installs it into .tools/anthropic-venv)")
def test_the_anthropic_sdk_reads_an_anthropic_413_for_a_body_past_mitmproxys_limit(make_gateway, emu, oauth_home):
    gw = make_gateway("anthropic413", env=oauth_home["env"], args=("--set", "qwen_max_body_mb=1"))
    params = {"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": [{"role": "user", "content": "x" * (5 << 20)}]}
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_") and "PROXY" not in k.upper()}
    env.update(HOME=str(gw.workdir), ANTHROPIC_BASE_URL=gw.url, ANTHROPIC_API_KEY="sk-ant-client")
    calls = gw.workdir / "calls.json"
    calls.write_text(json.dumps({"calls": [{"op": "create", "params": params}]}))
    r = anthropic_driver(["calls", f"@{calls}"], env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    raised = json.loads(r.stdout.strip().splitlines()[-1])["result"][0]["raised"]
    assert raised["status"] == 413 and isinstance(raised["body"], dict) and raised["body"]["type"] == "error", raised
    assert raised["body"]["error"]["type"] == "request_too_large" and "qwen_max_body_mb" in raised["body"]["error"]["message"]
    assert emu.chat_requests() == []


@pytest.mark.skipif(not ANTHROPIC_PY.exists(), reason="anthropic SDK not installed "
                    "(scripts/install-test-tools.sh installs it into .tools/anthropic-venv)")
def test_the_anthropic_sdk_gets_an_anthropic_error_for_a_head_over_the_limit(make_gateway, emu, oauth_home):
    gw = make_gateway("anthropic", env=oauth_home["env"])
    params = {"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": [{"role": "user", "content": "x"}],
              "extra_headers": {"x-padding": "a" * (100 << 10)}}
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_") and "PROXY" not in k.upper()}
    env.update(HOME=str(gw.workdir), ANTHROPIC_BASE_URL=gw.url, ANTHROPIC_API_KEY="sk-ant-client")
    r = anthropic_driver(["calls", json.dumps({"calls": [{"op": "create", "params": params}]})], env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    raised = json.loads(r.stdout.strip().splitlines()[-1])["result"][0]["raised"]
    assert raised["status"] == 431 and raised["body"]["type"] == "error"
    assert raised["body"]["error"]["type"] == "invalid_request_error"
    assert "64 KiB" in raised["body"]["error"]["message"]
    assert re.fullmatch(r"req_\w+", raised["request_id"] or "")
    assert emu.chat_requests() == []


def test_bytes_piped_ahead_of_an_answer_are_bounded(make_gateway, emu, oauth_home):
    """A client that sends a request and then 100 MiB more while its answer is on the way."""
    gw = make_gateway("piped", env=oauth_home["env"], args=NO_TOKENIZER, fork=False)  # Popen: its RSS is read
    before = warm_rss(gw)
    emu.switches(first_byte_delay_ms=3000)
    body = json.dumps(CHAT).encode()
    start = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\nContent-Type: application/json"
             f"\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body + b"GET /v1/models HTTP/1.1\r\nX-Padding: "
    answer, sent = flood(gw.port, start, 100 << 20)
    grown = rss_mb(gw.proc.pid) - before
    emu.switches(first_byte_delay_ms=0)
    assert sent < 8 << 20, f"{sent >> 20} MiB accepted before the gateway stopped reading"
    assert grown < 30, f"RSS grew by {grown:.0f} MB"
    assert b" 200 " not in answer.split(b"\r\n", 1)[0]  # the connection was closed, not answered
    assert serving(gw)


def test_an_endless_chunk_size_line_is_cut_off(make_gateway, emu, oauth_home):
    gw = make_gateway("chunked", env=oauth_home["env"], args=NO_TOKENIZER, fork=False)  # Popen: its RSS is read
    before = warm_rss(gw)
    start = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\nContent-Type: application/json"
             "\r\nTransfer-Encoding: chunked\r\n\r\n1").encode()
    answer, sent = flood(gw.port, start, 100 << 20)
    grown = rss_mb(gw.proc.pid) - before
    assert sent < 8 << 20, f"{sent >> 20} MiB accepted before the gateway stopped reading"
    assert grown < 30, f"RSS grew by {grown:.0f} MB"
    status, error = status_and_body(answer)
    assert status == 400 and error["error"]["code"] == "invalid_chunked_body", answer[:300]
    assert len(emu.chat_requests()) == 1  # the warm-up's
    assert serving(gw)


def test_http2_header_lists_are_bounded_by_h2_itself(make_gateway, emu, oauth_home):
    """A client that speaks HTTP/2 inside the explicit proxy's tunnel, with 100 KiB of headers: h2 (mitmproxy's
    HTTP/2 library) refuses a header list over 64 KiB with a connection error (GOAWAY ENHANCE_YOUR_CALM, then
    PROTOCOL_ERROR "Oversized header block"), not a 431; nothing reaches Qwen and the next client is served."""
    import h2.config
    import h2.connection
    import h2.errors
    import h2.events

    gw = make_gateway("h2", mode="regular", env=oauth_home["env"])
    raw = socket.create_connection(("127.0.0.1", gw.port), timeout=20)
    raw.sendall(b"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n\r\n")
    assert _read_until(raw, b"\r\n\r\n").startswith(b"HTTP/1.1 200")
    ctx = ssl.create_default_context(cafile=str(gw.ca_cert))
    ctx.set_alpn_protocols(["h2"])
    goaway = []
    received = []
    with ctx.wrap_socket(raw, server_hostname="api.openai.com") as tls:
        assert tls.selected_alpn_protocol() == "h2"
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        body = json.dumps(CHAT).encode()
        conn.send_headers(1, [(":method", "POST"), (":path", "/v1/chat/completions"), (":scheme", "https"),
                              (":authority", "api.openai.com"), ("content-type", "application/json"),
                              ("x-padding", "a" * (100 << 10))])
        conn.send_data(1, body, end_stream=True)
        tls.sendall(conn.data_to_send())
        for _ in range(100):  # until the gateway ends the connection
            data = tls.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                received.append(type(event).__name__)
                if isinstance(event, h2.events.ConnectionTerminated):
                    goaway.append((event.error_code, event.additional_data or b""))
            if goaway:
                break
    assert goaway and "ResponseReceived" not in received, received
    assert goaway[0][0] in (h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, h2.errors.ErrorCodes.PROTOCOL_ERROR), goaway
    assert emu.chat_requests() == []
    with httpx.Client(proxy=gw.url, verify=ssl.create_default_context(cafile=str(gw.ca_cert)), trust_env=False,
                      timeout=20) as c:
        assert c.post("https://api.openai.com/v1/chat/completions", json=CHAT).status_code == 200


# ---- slow clients -----------------------------------------------------------------------------------


def _closed(s: socket.socket) -> bytes | None:
    """What the gateway sent before it closed `s` (b"" for nothing), or None while it is still open."""
    got = b""
    while select.select([s], [], [], 0)[0]:
        try:
            part = s.recv(65536)
        except OSError:
            return got
        if not part:
            return got
        got += part
    return None if not got else got + (_closed(s) or b"")


def test_slow_and_silent_connections_are_closed_after_the_head_timeout(make_gateway, emu, oauth_home):
    """300 slowloris connections (100 silent, 100 with half a head, 100 adding one byte at a time) and an
    idle keep-alive connection: all closed once qwen_head_timeout (here 2 s) has passed; those that had sent
    part of a plain HTTP/1 head read a 408 first. The gateway serves throughout."""
    gw = make_gateway("loris", env=oauth_home["env"], args=("--set", "qwen_head_timeout=2"))
    port = gw.port
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
    partial = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
    trickle = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
    for s in partial + trickle:
        s.sendall(head)
    keepalive = httpx.Client(base_url=gw.url, trust_env=False, timeout=20)
    said: dict[socket.socket, bytes] = {}
    try:
        assert keepalive.post("/v1/chat/completions", json=CHAT).status_code == 200
        for round in range(60):  # one header byte per socket every 0.25 s, for at most 15 s
            for s in trickle:
                if s not in said:
                    try:
                        s.send(b"x")
                    except OSError:
                        said[s] = b""
            for s in silent + partial + trickle:
                if s not in said and (got := _closed(s)) is not None:
                    said[s] = got
            if len(said) == 300:
                break
            if round == 2:
                assert serving(gw)  # a new client is served while the slow ones wait
            time.sleep(0.25)
        assert len(said) == 300, f"{300 - len(said)} slow connections still open"
        for s in silent + partial + trickle:  # plain HTTP/1: each is told why (one still sending may miss it)
            if said[s] or s not in trickle:
                status, error = status_and_body(said[s])
                assert status == 408 and error["error"]["code"] == "request_timeout", said[s][:200]
        # the kept-alive connection, idle since its answer, was closed too: httpx opens a new one
        assert keepalive.post("/v1/chat/completions", json=CHAT).status_code == 200
    finally:
        keepalive.close()
        for s in silent + partial + trickle:
            s.close()
    gw.stop()
    log = gw.log()
    lines = [ln for ln in log.splitlines() if "qwen_head_timeout" in ln]
    assert 1 <= len(lines) <= 3, lines  # one line for the class, with its count: not one per connection
    # every slow connection is in a count (the kept-alive one was idle after an answer: not in them)
    assert sum(int(re.search(r"closed (\d+) client", ln).group(1)) for ln in lines) == 300, lines
    assert "Traceback" not in log


def test_a_stalled_connect_tunnel_and_tls_handshake_are_closed(make_gateway, emu, oauth_home):
    """Explicit proxy: a CONNECT followed by nothing, and a TLS handshake inside the tunnel that never ends."""
    gw = make_gateway("tunnel", mode="regular", env=oauth_home["env"], args=("--set", "qwen_head_timeout=2"))
    connect = b"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n\r\n"
    quiet = socket.create_connection(("127.0.0.1", gw.port))
    quiet.sendall(connect)
    handshake = socket.create_connection(("127.0.0.1", gw.port))
    handshake.sendall(connect)
    try:
        assert _read_until(quiet, b"\r\n\r\n").startswith(b"HTTP/1.1 200")
        assert _read_until(handshake, b"\r\n\r\n").startswith(b"HTTP/1.1 200")
        handshake.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # the first bytes of a ClientHello
        ended = {}
        for _ in range(60):
            for name, s in (("quiet", quiet), ("handshake", handshake)):
                if name not in ended and (got := _closed(s)) is not None:
                    ended[name] = got
            if len(ended) == 2:
                break
            time.sleep(0.25)
        assert set(ended) == {"quiet", "handshake"}, ended
        assert not ended["handshake"].startswith(b"HTTP/")  # nothing in plain HTTP inside a TLS handshake
        # an unchanged client through the same proxy is served
        ctx = ssl.create_default_context(cafile=str(gw.ca_cert))
        with httpx.Client(proxy=gw.url, verify=ctx, trust_env=False, timeout=20) as c:
            r = c.post("https://api.openai.com/v1/chat/completions", json=CHAT)
        assert r.status_code == 200, r.text
    finally:
        quiet.close()
        handshake.close()


def _read_until(s: socket.socket, end: bytes, timeout: float = 10) -> bytes:
    s.settimeout(timeout)
    data = b""
    while end not in data:
        part = s.recv(4096)
        if not part:
            break
        data += part
    s.settimeout(None)
    return data


def test_long_streams_and_websocket_sessions_outlive_the_head_timeout(make_gateway, emu, oauth_home):
    gw = make_gateway("long", env=oauth_home["env"], args=("--set", "qwen_head_timeout=1"))
    emu.switches(chunk_count=8, gap_ms=400)  # about 3 s of answer
    try:
        with httpx.Client(base_url=gw.url, trust_env=False, timeout=30) as c:
            with c.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
                events = [ln for ln in r.iter_lines() if ln.startswith("data: ")]
        assert events[-1] == "data: [DONE]" and len(events) >= 9
    finally:
        emu.switches(chunk_count=0, gap_ms=0)
    ws = websocket.create_connection(gw.url.replace("http://", "ws://") + "/v1/responses", timeout=15)
    try:
        for text in ("first", "second"):
            ws.send(json.dumps({"type": "response.create", "model": "gpt-5.5", "stream": True, "store": False,
                                "input": [{"type": "message", "role": "user",
                                           "content": [{"type": "input_text", "text": text}]}]}))
            while (event := json.loads(ws.recv()))["type"] not in ("response.completed", "response.failed", "error"):
                pass
            assert event["type"] == "response.completed", event
            time.sleep(2.5)  # the session idles longer than the head timeout between turns
    finally:
        ws.close()


# ---- file descriptors -----------------------------------------------------------------------------------


def _limits(pid: int) -> tuple[int, int]:
    for line in open(f"/proc/{pid}/limits"):
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise RuntimeError("no open-files limit")


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one(make_gateway, emu, oauth_home):
    gw = make_gateway("nofile", env=oauth_home["env"], prefix=("prlimit", "--nofile=512:4096", "--"),
                      args=("--set", "termlog_verbosity=debug"))  # the line is a debug line
    assert _limits(gw.proc.pid) == (4096, 4096)
    assert serving(gw)
    assert "qwen: open files limit raised from 512 to 4096" in gw.log()


def _storm(gw, n: int = 400) -> list[socket.socket]:
    """More slow clients than the gateway (held to 200 descriptors) can accept; each sends half a head."""
    subprocess.run(["prlimit", f"--pid={gw.proc.pid}", "--nofile=200:200"], check=True)
    assert _limits(gw.proc.pid) == (200, 200)
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\n".encode()
    clients = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", gw.port))  # beyond the listen queue, connects wait in SYN_SENT
        clients.append(s)
    time.sleep(1)
    for s in clients:
        try:
            s.send(head)
        except OSError:
            pass
    return clients


def test_stopping_during_a_descriptor_storm_is_quiet(make_gateway, emu, oauth_home):
    """Stopped while slow clients hold every descriptor and more wait in the listen queue: the queued ones are
    not accepted while the gateway closes the others; one accepted at the last moment has its handler cancelled
    at exit, which Python 3.12.1 reports as a traceback unless the gateway drops it (descriptors.at_exit)."""
    gw = make_gateway("storm-stop", env=oauth_home["env"], args=("--set", "qwen_head_timeout=600"))
    clients = _storm(gw)
    try:
        time.sleep(2)
        gw.stop()
    finally:
        for s in clients:
            s.close()
    log = gw.log()
    assert gw.proc.returncode == 0 and "qwen: gateway stopped" in log
    at = log.find("Traceback")
    assert at < 0, log[max(0, at - 1500):at + 3000]  # (no `not in` on the whole log: pytest's diff of it took minutes)


def test_a_descriptor_storm_logs_a_few_lines_and_serving_resumes(make_gateway, emu, oauth_home):
    """More slow clients than the process has descriptors (prlimit: 200): accept() fails with EMFILE over and
    over. The log says so in a few lines, not one per failure; once the clients leave, the gateway serves."""
    gw = make_gateway("storm", env=oauth_home["env"], args=("--set", "qwen_head_timeout=600"))
    seen = len(gw.log())
    clients = _storm(gw)
    try:
        time.sleep(5)  # the storm: every turn of the event loop, accept() fails
        during = gw.log()[seen:]
        errors = [ln for ln in during.splitlines() if "Too many open files" in ln or "descriptor" in ln]
        assert 1 <= len(errors) <= 3, f"{len(errors)} lines, {len(during)} bytes of log: {during[:1500]}"
        assert "Traceback" not in during
        assert "LimitNOFILE" in during or "ulimit -n" in during  # it says what to do
    finally:
        for s in clients:
            s.close()
    for _ in range(40):  # served again once descriptors are free (at most 20 s)
        try:
            if serving(gw):
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    else:
        pytest.fail("not served after the clients left\n" + gw.log()[-2000:])
    gw.stop()
    assert "Traceback" not in gw.log()[seen:]
