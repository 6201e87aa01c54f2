"""What an attacker tries against a running gateway (real mitmdump, the emulator as Qwen): compressed
bombs, endless uploads, an open relay, browser pages, a silent upstream. Each is refused, bounded, or
answered in OpenAI's format, and the gateway keeps serving."""

from __future__ import annotations

import gzip
import os
import select
import socket
import time

import httpx
import pytest
from helpers.procs import until

pytestmark = pytest.mark.e2e

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def serving(gw) -> bool:
    r = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, trust_env=False, timeout=20)
    return r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Echo: hi"


def test_a_gzip_bomb_is_refused_while_it_is_decoded(make_gateway, emu, oauth_home):
    gw = make_gateway("bomb", env=oauth_home["env"], args=("--set", "qwen_max_body_mb=1"), fork=False)  # its RSS
    before = rss_mb(gw.proc.pid)
    bomb = gzip.compress(b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "' + b"a" * (256 << 20)
                         + b'"}]}', compresslevel=9)
    assert len(bomb) < (1 << 20)  # within the limit on the wire
    r = httpx.post(gw.url + "/v1/chat/completions", content=bomb, trust_env=False, timeout=60,
                   headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert emu.chat_requests() == []
    assert rss_mb(gw.proc.pid) - before < 100  # 256 MiB decoded would show
    assert serving(gw)


def test_an_endless_keyless_upload_is_cut_off_not_buffered(make_gateway, emu, oauth_home):
    gw = make_gateway("upload", env={**oauth_home["env"], "QWEN_GATEWAY_KEYS": "the-key"},
                      args=("--set", "qwen_max_body_mb=1"), fork=False)  # Popen: its RSS is read
    before = rss_mb(gw.proc.pid)
    chunk = b"x" * (1 << 20)

    def body():
        for _ in range(256):  # 256 MiB, chunked: no Content-Length to refuse up front
            yield chunk

    try:
        r = httpx.post(gw.url + "/v1/chat/completions", content=body(), trust_env=False, timeout=60,
                       headers={"content-type": "application/json"})
        assert r.status_code in (401, 413)
    except httpx.HTTPError:
        pass  # mitmproxy cut the upload off at its body_size_limit
    assert rss_mb(gw.proc.pid) - before < 100
    assert emu.chat_requests() == []
    r = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, trust_env=False, timeout=20,
                   headers={"authorization": "Bearer the-key"})
    assert r.status_code == 200


def open_sockets(pid: int) -> int:
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except FileNotFoundError:  # closed meanwhile
            pass
    return n


def upload_until_answered(port: int, limit_s: float = 20) -> tuple[bytes, float | None]:
    """A chunked upload that never ends, read while it is written: (what came back, seconds until the
    gateway ended the connection — EOF or reset —, or None if it was still open after `limit_s`)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"100000\r\n" + b"x" * 0x100000 + b"\r\n"
    got, t0 = b"", time.monotonic()
    s.setblocking(False)
    try:
        while time.monotonic() - t0 < limit_s:
            readable, writable, _ = select.select([s], [s], [], 0.2)
            if readable:
                try:
                    data = s.recv(65536)
                except ConnectionResetError:
                    return got, time.monotonic() - t0
                if not data:
                    return got, time.monotonic() - t0
                got += data
            elif writable:
                try:
                    s.send(chunk)
                except (BlockingIOError, InterruptedError):
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    return got, time.monotonic() - t0
        return got, None
    finally:
        s.close()


def test_an_upload_past_mitmproxys_limit_ends_its_connection(make_gateway, emu, oauth_home):
    """mitmproxy answers 413 past body_size_limit and cancels the connection's handler, but left the socket
    open, unread, for as long as the client kept it: a connection and a descriptor each, for ever."""
    gw = make_gateway("leak", env=oauth_home["env"], args=("--set", "qwen_max_body_mb=1"))
    assert serving(gw)
    sockets, served = open_sockets(gw.proc.pid), len(emu.chat_requests())
    answered = 0
    for _ in range(3):
        got, ended = upload_until_answered(gw.port)
        # mitmproxy closes with the upload's bytes unread: the reset may reach a loaded client before it read the
        # 413 (the kernel then drops what it had not read); the 413 itself: test_e2e_hostile_clients.py, with the SDKs
        assert got.startswith(b"HTTP/1.1 413") or got == b"", got[:200]
        answered += got.startswith(b"HTTP/1.1 413")
        assert ended is not None, "the gateway kept the refused upload's connection open"
    print(f"\n{answered} of 3 uploads read their 413 before the reset")
    until(lambda: open_sockets(gw.proc.pid) <= sockets, "the refused uploads' sockets closed", limit=10)
    assert len(emu.chat_requests()) == served  # nothing of the uploads reached Qwen
    assert serving(gw)


def test_with_client_keys_the_explicit_proxy_is_no_open_relay(make_gateway, emu, oauth_home):
    gw = make_gateway("relay", mode="regular", env={**oauth_home["env"], "QWEN_GATEWAY_KEYS": "the-key"})
    with httpx.Client(proxy=gw.url, trust_env=False, timeout=20) as c:
        r = c.get(emu.url + "/_emulator/stats")  # "some other host", plain HTTP through the proxy
    assert r.status_code == 403 and r.json()["error"]["code"] == "passthrough_refused"
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)  # a CONNECT tunnel elsewhere
    s.sendall(f"CONNECT 127.0.0.1:{emu.port} HTTP/1.1\r\nHost: 127.0.0.1:{emu.port}\r\n\r\n".encode())
    assert s.recv(200).startswith(b"HTTP/1.1 403")
    s.close()


@pytest.mark.parametrize("headers", [{"host": "evil.example:8080"}, {"origin": "https://evil.example"},
                                     {"origin": "null"}])
def test_browser_pages_are_refused(gw, emu, headers):
    for method, path, body in (("POST", "/v1/chat/completions", CHAT), ("GET", "/health", None),
                               ("GET", "/metrics", None), ("GET", "/v1/models", None)):
        r = httpx.request(method, gw.url + path, json=body, headers=headers, trust_env=False, timeout=20)
        assert r.status_code == 403, (path, r.text)
    assert emu.chat_requests() == []
    assert serving(gw)


def test_a_silent_upstream_before_headers_is_a_504_in_bounded_time(make_gateway, emu, oauth_home):
    gw = make_gateway("silent", env=oauth_home["env"], args=("--set", "qwen_upstream_timeout=2"))
    emu.switches(first_byte_delay_ms=8000)
    t0 = time.monotonic()
    r = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, trust_env=False, timeout=30)
    assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - t0 < 8  # the gateway gave up; Qwen had not answered yet
    emu.switches(first_byte_delay_ms=0)
    assert serving(gw)


def test_debug_mitmproxy_logs_carry_no_credential(make_gateway, emu, oauth_home):
    gw = make_gateway("debug", env=oauth_home["env"], args=("--set", "proxy_debug=true", "--set",
                                                             "termlog_verbosity=debug", "--set", "flow_detail=4"))
    assert serving(gw)
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json={**CHAT, "stream": True}, trust_env=False,
                      timeout=20) as r:
        assert r.status_code == 200 and "[DONE]" in r.read().decode()
    time.sleep(0.5)
    assert oauth_home["token"] not in gw.log()
    assert os.path.getsize(gw.logfile) > 0


def test_stream_large_bodies_cannot_send_a_request_to_the_reverse_target(make_gateway, emu, oauth_home):
    from e2e.test_e2e_fail_closed import Target
    target = Target()
    try:
        gw = make_gateway("slb", mode=f"reverse:http://127.0.0.1:{target.port}", env=oauth_home["env"],
                          args=("--set", "stream_large_bodies=1k"))
        big = {"model": "gpt-4o", "messages": [{"role": "user", "content": "long " * 4000}]}
        r = httpx.post(gw.url + "/v1/chat/completions", json=big, trust_env=False, timeout=30)
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"].startswith("Echo: long")
        assert target.connections == 0 and target.received == b""
    finally:
        target.close()
