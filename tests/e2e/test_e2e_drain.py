"""The graceful drain through real mitmdump (issue 40, item 4): SIGTERM while a 5-second stream runs. The stream
completes; readiness turns 503 `draining` while liveness stays 200; a new request is refused 503 with Retry-After
in its client's format (openai-python's exception, Anthropic's error body); a Responses WebSocket turn in progress
completes and the next one is refused; the process exits 0 as soon as nothing runs, every exchange in the
ledger. A second SIGTERM ends a stream at once with the client's error event, recorded. Unit: test_drain.py."""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time

import httpx
import openai
import pytest
import websocket

from helpers.ledger import ledger_rows
from helpers.procs import ROOT, until

pytestmark = pytest.mark.e2e

WORDS = "one two three four five six seven eight nine ten"
ASK = [{"role": "user", "content": WORDS}]


def gateway(make_gateway, oauth_home, tmp_path, *args: str):
    env = {**oauth_home["env"], "QWEN_GATEWAY_HOME": str(tmp_path / "state")}  # a ledger of its own
    return make_gateway(env=env, args=args)


def probe(gw, name: str) -> tuple[int, dict]:
    r = httpx.get(f"{gw.url}/health/{name}", trust_env=False, timeout=10)
    return r.status_code, r.json()


def draining(gw) -> bool:
    return probe(gw, "readiness") == (503, {"status": "not_ready", "reasons": ["draining"]})


def test_sigterm_lets_the_stream_finish_refuses_new_requests_and_exits_0(make_gateway, emu, oauth_home, tmp_path):
    emu.switches(chunk_count=10, gap_ms=500)  # ten pieces half a second apart: a stream of about 5 s
    gw = gateway(make_gateway, oauth_home, tmp_path)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=60)
    stream = iter(client.chat.completions.create(model="gpt-4o", messages=ASK, stream=True))
    got = [next(stream)]  # the stream has begun
    gw.proc.send_signal(signal.SIGTERM)
    until(lambda: draining(gw), "readiness 503 draining", limit=10, every=0.05)
    assert probe(gw, "liveness") == (200, {"status": "alive"})

    with pytest.raises(openai.APIStatusError) as refused:  # OpenAI's format, the SDK's own exception
        client.chat.completions.create(model="gpt-4o", messages=ASK)
    assert refused.value.status_code == 503 and refused.value.code == "gateway_shutting_down"
    assert refused.value.response.headers["retry-after"] == "5" and "shutting down" in refused.value.message
    messages = httpx.post(gw.url + "/v1/messages", trust_env=False, timeout=10,
                          headers={"anthropic-version": "2023-06-01", "x-api-key": "client-key"},
                          json={"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": ASK})
    assert messages.status_code == 503 and messages.headers["retry-after"] == "5"
    body = messages.json()
    assert body["type"] == "error" and body["error"]["type"] == "api_error" and "shutting down" in body["error"]["message"]

    got += list(stream)  # the stream started before SIGTERM arrives whole
    assert "".join(c.choices[0].delta.content or "" for c in got if c.choices) == f"Echo: {WORDS}"
    assert [c.choices[0].finish_reason for c in got if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert gw.proc.wait(30) == 0, gw.log()
    log = gw.log()
    assert "qwen: drain: nothing in progress; stopping" in log and "is over with" not in log, log
    shown = [ln for ln in (ROOT / "docs" / "deploy.md").read_text().splitlines()
             if ln.startswith("qwen: ") and "drain" in ln]
    assert len(shown) == 2 and all(ln in log for ln in shown), shown  # docs/deploy.md's lines, as printed
    assert "Traceback" not in log, log
    rows = [(r["path"], r["status"], r["error"]) for r in ledger_rows(tmp_path / "state")]
    assert rows.count(("/v1/chat/completions", 200, None)) == 1, rows  # the stream, whole
    assert ("/v1/chat/completions", 503, "gateway_shutting_down") in rows, rows
    assert ("/v1/messages", 503, "gateway_shutting_down") in rows, rows
    assert ("/health/readiness", 503, None) in rows and ("/health/liveness", 200, None) in rows, rows


def test_a_websocket_turn_in_progress_completes_and_the_next_is_refused(make_gateway, emu, oauth_home, tmp_path):
    """A stream that stalls 8 s keeps the drain going after the WebSocket turn: the next turn meets the drain."""
    emu.switches(chunk_count=10, gap_ms=300)
    gw = gateway(make_gateway, oauth_home, tmp_path)
    emu.fault("stall", seconds=8)  # the next request only: the HTTP stream below
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=60)
    stalled = iter(client.chat.completions.create(model="gpt-4o", messages=ASK, stream=True))
    got = [next(stalled)]
    ws = websocket.create_connection(gw.url.replace("http://", "ws://") + "/v1/responses", timeout=15,
                                     header=["Authorization: Bearer client-key"])
    try:
        ws.send(json.dumps({"type": "response.create", "model": "gpt-4o", "input": WORDS, "store": False}))
        events = [json.loads(ws.recv())]
        gw.proc.send_signal(signal.SIGTERM)
        until(lambda: draining(gw), "readiness 503 draining", limit=10, every=0.05)
        while events[-1]["type"] not in ("response.completed", "response.failed", "error"):
            try:
                events.append(json.loads(ws.recv()))
            except websocket.WebSocketException as e:
                raise AssertionError(f"{e!r} after {[ev['type'] for ev in events]}\n{gw.log()}") from e
        assert events[-1]["type"] == "response.completed", events[-1]
        assert events[-1]["response"]["output"][-1]["content"][0]["text"] == f"Echo: {WORDS}"
        ws.send(json.dumps({"type": "response.create", "model": "gpt-4o", "input": "again", "store": False}))
        refused = json.loads(ws.recv())
        assert (refused["type"], refused["status"], refused["code"]) == ("error", 503, "gateway_shutting_down")
        assert refused["headers"]["retry-after"] == "5"
        got += list(stalled)  # the stalled stream ends whole too, and then the gateway stops
        assert "".join(c.choices[0].delta.content or "" for c in got if c.choices) == f"Echo: {WORDS}"
        assert gw.proc.wait(30) == 0, gw.log()
        opcode, data = ws.recv_data(control_frame=True)  # told `going away` at the stop, after its last event
        assert (opcode, int.from_bytes(data[:2], "big")) == (websocket.ABNF.OPCODE_CLOSE, 1001)
    finally:
        ws.close()
    statuses = sorted((r["status"], r["error"]) for r in ledger_rows(tmp_path / "state") if r["path"] == "/v1/responses")
    assert (200, None) in statuses and (503, "gateway_shutting_down") in statuses, statuses


def test_a_second_sigterm_ends_the_stream_with_an_error_event_at_once(make_gateway, emu, oauth_home, tmp_path):
    emu.switches(chunk_count=10, gap_ms=3000)  # about 30 s: the drain would wait for it
    gw = gateway(make_gateway, oauth_home, tmp_path, "--set", "qwen_drain_s=120")
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=60)
    stream = iter(client.chat.completions.create(model="gpt-4o", messages=ASK, stream=True))
    got = [next(stream)]
    gw.proc.send_signal(signal.SIGTERM)
    until(lambda: draining(gw), "readiness 503 draining", limit=10, every=0.05)
    ended: list[BaseException] = []

    def read() -> None:
        try:
            got.extend(stream)
        except BaseException as e:
            ended.append(e)

    reader = threading.Thread(target=read)
    reader.start()
    gw.proc.send_signal(signal.SIGTERM)
    assert gw.proc.wait(20) == 0, gw.log()
    reader.join(20)
    assert not reader.is_alive()
    assert len(ended) == 1 and isinstance(ended[0], openai.APIError), ended  # the SDK read the error event
    assert "shutting down" in str(ended[0]) and ended[0].body["code"] == "gateway_shutting_down", ended[0].body
    text = "".join(c.choices[0].delta.content or "" for c in got if c.choices)
    assert f"Echo: {WORDS}".startswith(text) and text != f"Echo: {WORDS}", text  # cut midway
    log = gw.log()
    assert "a second SIGTERM: stopping now" in log and "Traceback" not in log, log
    rows = [r for r in ledger_rows(tmp_path / "state") if r["path"] == "/v1/chat/completions"]
    assert [(r["status"], r["stream"]) for r in rows] == [(200, 1)], rows  # the stream's row, its end an error
    assert rows[0]["error"] == "gateway_shutting_down", rows  # the error event's code, as a refusal's


def ask(port: int) -> str:
    """One chat request on a connection of its own: `503 retry-after=5` (or its status), `refused` when the connection
    was refused (the listener closed: nothing was sent), `empty` when it was accepted and closed with no answer,
    `reset` when it was reset."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps({"model": "gpt-4o", "messages": ASK}),
                     headers={"content-type": "application/json", "authorization": "Bearer client-key"})
        answer = conn.getresponse()
        answer.read()
        return f"{answer.status} retry-after={answer.getheader('retry-after')}"
    except ConnectionRefusedError:
        return "refused"
    except http.client.RemoteDisconnected:
        return "empty"
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    finally:
        conn.close()


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "busy"])
def test_from_the_signal_on_every_request_is_answered_503_or_refused_at_connect_never_cut(
        make_gateway, emu, oauth_home, tmp_path, busy):
    """The issue: a SIGTERM on an idle gateway, a request 0.02–0.2 s after it got an empty reply. Requests at those
    moments, then one after another until the listener is closed (qwen_drain_s 2: they keep the drain going until
    its deadline, so the listener closes under them): each is 503 with Retry-After until the connection is refused,
    none accepted and cut; a stream in progress (busy) completes."""
    emu.switches(chunk_count=5, gap_ms=200)  # a stream of about a second
    gw = gateway(make_gateway, oauth_home, tmp_path, "--set", "qwen_drain_s=2")
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=60)
    assert client.chat.completions.create(model="gpt-4o", messages=ASK).choices[0].message.content == f"Echo: {WORDS}"
    stream = iter(client.chat.completions.create(model="gpt-4o", messages=ASK, stream=True)) if busy else None
    got = [next(stream)] if stream is not None else []
    sent = len(emu.chat_requests())
    early: dict[float, str] = {}
    signalled = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)

    def at(delay: float) -> None:
        time.sleep(max(0.0, signalled + delay - time.monotonic()))
        early[delay] = ask(gw.port)

    threads = [threading.Thread(target=at, args=(d,)) for d in (0.02, 0.05, 0.1, 0.15, 0.2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    later = []
    for _ in range(2000):  # bounded: the drain's deadline is 2 s; a request takes a few ms
        later.append(ask(gw.port))
        if later[-1] == "refused" or gw.proc.poll() is not None:
            break
    assert early == {d: "503 retry-after=5" for d in (0.02, 0.05, 0.1, 0.15, 0.2)}, (early, gw.log())
    assert "empty" not in later, (later.count("empty"), later.index("empty"), len(later), gw.log())
    assert set(later[:-1]) == {"503 retry-after=5"} and later[-1] in ("refused", "503 retry-after=5"), later
    if stream is not None:
        got += list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in got if c.choices) == f"Echo: {WORDS}"
    assert gw.proc.wait(30) == 0, gw.log()
    assert len(emu.chat_requests()) == sent  # nothing that came after the signal reached Qwen
    log = gw.log()
    began = [ln for ln in log.splitlines() if "qwen: SIGTERM: draining:" in ln]
    ended = [ln for ln in log.splitlines() if "qwen: drain: " in ln]
    assert len(began) == 1 and len(ended) == 1, log
    assert ("1 request in progress" if busy else "nothing in progress") in began[0], began
    assert "Traceback" not in log, log
    rows = ledger_rows(tmp_path / "state")
    assert not [r for r in rows if r["error"] == "client_disconnected"], rows
    refused = [r for r in rows if r["status"] == 503]
    assert len(refused) == len(early) + sum(1 for o in later if o.startswith("503")), len(refused)
    print(f"\n{'busy' if busy else 'idle'}: {len(later) + len(early)} requests after SIGTERM, "
          f"{len(refused)} answered 503, then {later[-1]}")


SLOW_START = '''
import asyncio


class SlowStart:
    """An addon loaded before the gateway whose `running` takes a while: mitmproxy listens, the gateway has not yet
    been told it runs (a start-up on a busy machine, or behind another addon)."""

    async def running(self):
        await asyncio.sleep(2.0)


addons = [SlowStart()]
'''


def test_a_sigterm_during_start_up_drains_answering_503_never_a_reset(emu, oauth_home, tmp_path):
    """Issue 68, item 4: a SIGTERM after mitmproxy listens but before the gateway's `running` used to stop at once
    (mitmproxy's handler): exit 0 with no drain line, and a request sent a moment later reset. Now the drain begins
    then: what arrives is answered 503 with Retry-After in its client's format, the process exits 0 once the gateway
    has started and drained, and the log says so."""
    from helpers.procs import ADDON, BIN, PORTFILE_ADDON, _stop, free_port
    import os
    import socket
    import subprocess

    (tmp_path / "slow.py").write_text(SLOW_START)
    port = free_port()
    log = tmp_path / "mitmdump.log"
    env = {**os.environ, **oauth_home["env"], "QWEN_GATEWAY_HOME": str(tmp_path / "state"),
           "QWEN_TEST_PORTFILE": str(tmp_path / "ports.json")}
    cmd = [str(BIN / "mitmdump"), "--set", f"confdir={tmp_path / 'conf'}", "--mode",
           f"reverse:https://portal.qwen.ai@127.0.0.1:{port}", "-s", str(tmp_path / "slow.py"), "-s",
           str(PORTFILE_ADDON), "-s", str(ADDON)]
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, cwd=str(tmp_path))
    try:
        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0
        until(listening, "mitmproxy listening", limit=30, every=0.02)
        assert "qwen: state in the folder" not in log.read_text()  # the gateway has not started yet
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        answers = []
        for _ in range(3):  # what a client sends in the moment after the signal: answered, never reset
            r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", trust_env=False, timeout=10,
                           json={"model": "gpt-4o", "messages": ASK})
            answers.append((r.status_code, r.headers.get("retry-after"), r.json()["error"]["code"]))
            time.sleep(0.05)
        assert answers == [(503, "5", "gateway_shutting_down")] * 3, answers
        assert proc.wait(30) == 0
    finally:
        _stop(proc)
    text = log.read_text()
    assert "qwen: SIGTERM during start-up" in text and "qwen: drain: nothing in progress; stopping" in text, text
    assert "qwen: gateway stopped" in text and "Traceback" not in text, text


def test_a_kept_alive_connection_closes_after_its_answer_never_under_a_request(make_gateway, emu, oauth_home,
                                                                                 tmp_path):
    """Issue 68, item 4: behind nginx, a POST sent on a kept-alive connection as the drained gateway stopped was
    reset (502). From the signal on, each HTTP/1 answer says `Connection: close` and the gateway closes the
    connection after it, while the drain goes on: a stream running at the signal (its head already sent: it cannot
    say it, and its connection is closed after its last byte all the same) and an answer given during the drain
    leave no connection open for a next request to be cut on. A second stream keeps the gateway draining."""
    import socket

    emu.switches(chunk_count=10, gap_ms=300)  # streams of about 3 s
    gw = gateway(make_gateway, oauth_home, tmp_path, "--set", "qwen_drain_s=30")

    def request(stream: bool) -> bytes:
        body = json.dumps({"model": "gpt-4o", "messages": ASK, "stream": stream}).encode()
        return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\nAuthorization: Bearer "
                f"client-key\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body

    def answer(conn: socket.socket) -> tuple[int, bytes, bool]:
        """One whole answer read from a kept-alive connection (its status, its head as bytes), and whether the
        gateway then closed the connection (EOF within 1 s; else it stays open for another request)."""
        resp = http.client.HTTPResponse(conn)
        resp.begin()
        text = resp.read()
        assert resp.status in (200, 503) and text, (resp.status, text)
        conn.settimeout(1)
        try:
            closed = conn.recv(1) == b""
        except TimeoutError:
            closed = False
        return resp.status, str(resp.headers).lower().encode(), closed

    def opened(stream: bool) -> socket.socket:
        conn = socket.create_connection(("127.0.0.1", gw.port), timeout=30)
        conn.sendall(request(stream))
        return conn

    kept = opened(False)  # a first answer: the connection kept alive (no drain yet)
    status, first, closed = answer(kept)
    assert status == 200 and b"connection: close" not in first and not closed
    ending = opened(True)
    until(lambda: len(emu.chat_requests()) == 2, "the first stream asked of Qwen")
    time.sleep(1.0)
    going = opened(True)  # ends about a second after the first: the drain still runs when the first ends
    until(lambda: len(emu.chat_requests()) == 3, "the second stream asked of Qwen")
    gw.proc.send_signal(signal.SIGTERM)
    until(lambda: draining(gw), "readiness 503 draining", limit=10, every=0.05)
    kept.sendall(request(False))  # a request on the kept-alive connection during the drain: 503, then closed
    status, refused, refused_closed = answer(kept)
    assert status == 503 and b"connection: close" in refused and refused_closed
    status, streamed, stream_closed = answer(ending)
    assert gw.proc.poll() is None and draining(gw)  # the gateway still drains (the second stream runs)
    assert status == 200 and stream_closed, streamed
    status, streamed, stream_closed = answer(going)
    assert status == 200 and stream_closed, streamed
    assert gw.proc.wait(30) == 0


HOLD_IMPORT = '''
import importlib.abc
import os
import pathlib
import sys
import time

HOLD = pathlib.Path(os.environ["QWEN_TEST_HOLD"])


class Hold(importlib.abc.MetaPathFinder):
    """The gateway's import held (as on a slow disk or a busy machine) until the test says go."""

    def find_spec(self, name, path=None, target=None):
        if name == "qwen_gateway.addon":
            sys.meta_path.remove(self)
            (HOLD / "importing").touch()
            deadline = time.monotonic() + 60
            while not (HOLD / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        return None


sys.meta_path.insert(0, Hold())
'''


def test_a_sigterm_while_the_addon_imports_stops_cleanly_with_exit_0(emu, oauth_home, tmp_path):
    """issue 82: "a SIGTERM while the addon still imports exits 143". mitmproxy's `run` sets its loop's SIGTERM
    handler before it loads the scripts, so a SIGTERM while the gateway imports (held here) is kept and handed to
    the drain once the gateway runs: exit 0, said in the log. The 143 is earlier: mitmproxy's own imports and
    options, before any addon code runs (docs/deploy.md#a-graceful-drain)."""
    from helpers.procs import ADDON, BIN, _stop, free_port
    import os
    import subprocess

    (tmp_path / "hold").mkdir()
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(HOLD_IMPORT)
    log = tmp_path / "mitmdump.log"
    env = {**os.environ, **oauth_home["env"], "QWEN_GATEWAY_HOME": str(tmp_path / "state"),
           "QWEN_TEST_HOLD": str(tmp_path / "hold"), "PYTHONPATH": str(tmp_path / "site")}
    cmd = [str(BIN / "mitmdump"), "--set", f"confdir={tmp_path / 'conf'}", "--mode",
           f"reverse:https://portal.qwen.ai@127.0.0.1:{free_port()}", "-s", str(ADDON)]
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, cwd=str(tmp_path))
    try:
        until(lambda: (tmp_path / "hold" / "importing").exists(), "the gateway importing", limit=60, every=0.02)
        proc.send_signal(signal.SIGTERM)
        (tmp_path / "hold" / "go").touch()
        assert proc.wait(60) == 0, log.read_text()
    finally:
        _stop(proc)
    text = log.read_text()
    assert "qwen: SIGTERM during start-up" in text and "qwen: gateway stopped" in text, text
    assert "Traceback" not in text, text


def test_a_connection_mitmproxy_holds_before_the_gateway_hears_of_it_is_answered_not_cut(
        make_gateway, emu, oauth_home, tmp_path):
    """CI, once in 5,500 tests: the last request before the entrance closed got an empty reply. Between asyncio's
    accept and the gateway's `client_connected` hook mitmproxy holds a connection the gateway has not heard of;
    the drain stopped past it. Widened here by a user's addon ahead of the gateway whose `client_connected` awaits
    0.6 s: a request 0.1 s after SIGTERM on an idle gateway is heard of only after the entrance closed (0.25 s of
    quiet). It is answered 503, never cut."""
    env = {**oauth_home["env"], "QWEN_GATEWAY_HOME": str(tmp_path / "state"), "QWEN_TEST_CONNECT_DELAY_S": "0.6"}
    gw = make_gateway(env=env, args=("--set", "qwen_drain_s=5"),
                      before=(str(ROOT / "tests" / "helpers" / "slow_connect.py"),))
    assert ask(gw.port) == "200 retry-after=None"
    signalled = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)
    time.sleep(max(0.0, signalled + 0.1 - time.monotonic()))
    assert ask(gw.port) == "503 retry-after=5", gw.log()
    assert gw.proc.wait(30) == 0, gw.log()
    # the drain stopped once the connection was answered and closed, not while mitmproxy held it (before: the stop
    # closed it; the request line is written after the answer, so its place in the log says nothing)
    assert "qwen: gateway stopped\n" in gw.log() and "open client connection" not in gw.log(), gw.log()
