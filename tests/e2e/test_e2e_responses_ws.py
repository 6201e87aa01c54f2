"""The Responses API over WebSocket (`GET /v1/responses` upgraded), as Codex's built-in provider uses it first,
through a real mitmdump; and the finding that decided how the gateway serves it."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import websocket

from helpers.procs import BIN, PORTFILE_ADDON, _stop, _wait_for_file
from helpers.openai_schema import validate_stream_event

pytestmark = pytest.mark.e2e

TOOLS = [{"type": "additional_tools", "role": "developer", "tools": [
    {"type": "namespace", "name": "functions", "description": "", "tools": [
        {"type": "function", "name": "exec_command", "strict": False,
         "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}]}]}]

PROBE = '''
import asyncio, base64, hashlib
from mitmproxy import ctx, http

class Probe:
    """Answers a WebSocket upgrade itself (no server connection) and echoes each message back."""
    def request(self, flow):
        key = flow.request.headers.get("sec-websocket-key", "")
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        flow.response = http.Response.make(101, b"", {"Upgrade": "websocket", "Connection": "Upgrade",
                                                      "Sec-WebSocket-Accept": accept.decode()})

    def websocket_message(self, flow):
        message = flow.websocket.messages[-1]
        if message.from_client:
            message.drop()
            ctx.master.commands.call("inject.websocket", flow, True, b"echo:" + message.content, True)

addons = [Probe()]
'''


def test_mitmproxy_lets_an_addon_answer_an_upgrade_but_crashes_when_the_client_closes(tmp_path):
    """Why the gateway does not answer the upgrade in its request hook (mitmproxy 12.2): messages work both
    ways, but the client's close is sent to a server connection that was never opened."""
    (tmp_path / "probe.py").write_text(PROBE)
    portfile = tmp_path / "ports.json"
    logfile = tmp_path / "mitmdump.log"
    proc = subprocess.Popen([str(BIN / "mitmdump"), "--set", f"confdir={tmp_path / 'conf'}", "--set",
                             "connection_strategy=lazy", "--mode", "reverse:http://127.0.0.1:9@127.0.0.1:0", "-s",
                             str(PORTFILE_ADDON), "-s", str(tmp_path / "probe.py")],
                            stdout=open(logfile, "w"), stderr=subprocess.STDOUT,
                            env={"QWEN_TEST_PORTFILE": str(portfile), "PATH": "/usr/bin:/bin"})
    try:
        port = next(iter(json.loads(_wait_for_file(portfile, proc, "mitmdump")).values()))
        ws = websocket.create_connection(f"ws://127.0.0.1:{port}/v1/responses", timeout=5)
        ws.send("hello")
        assert ws.recv() == "echo:hello"  # the addon can answer the upgrade and talk
        ws.close()
        deadline = time.monotonic() + 5
        while "crashed" not in logfile.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        _stop(proc)
    text = logfile.read_text()
    assert "mitmproxy has crashed!" in text and "KeyError: Server" in text


def connect(gw, **headers) -> websocket.WebSocket:
    return websocket.create_connection(gw.url.replace("http://", "ws://") + "/v1/responses", timeout=15,
                                       header=[f"{k}: {v}" for k, v in headers.items()])


def turn(ws: websocket.WebSocket, body: dict, validate: bool = True) -> list[dict]:
    ws.send(json.dumps({"type": "response.create", **body}))
    events = []
    while True:
        event = json.loads(ws.recv())
        events.append(event)
        if event["type"] in ("response.completed", "response.failed", "response.incomplete", "error"):
            break
    if validate and events[-1]["type"] != "error":
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        for e in events:
            validate_stream_event(e)
    return events


def user(text: str) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def test_codex_style_session_over_websocket(gw, emu):
    emu.switches(tool_calls="always", tool_arguments={"cmd": "echo hi"})
    base = {"model": "gpt-6.1-sol", "store": False, "stream": True, "include": ["reasoning.encrypted_content"],
            "tool_choice": "auto", "parallel_tool_calls": False}
    seen = len(gw.log())  # the session's gateway: earlier tests' lines are not this test's
    ws = connect(gw, Authorization="Bearer client-key", **{"openai-beta": "responses_websockets=2026-02-06"})
    try:
        warm = turn(ws, {**base, "input": [], "generate": False})
        assert [e["type"] for e in warm] == ["response.created", "response.in_progress", "response.completed"]
        assert emu.chat_requests() == []  # a warm-up never reaches Qwen
        first = turn(ws, {**base, "previous_response_id": warm[-1]["response"]["id"],
                          "input": [*TOOLS, user("run it")]})
        call = first[-1]["response"]["output"][-1]
        assert call["type"] == "function_call" and call["name"] == "exec_command" and call["namespace"] == "functions"
        assert any(e["type"] == "response.function_call_arguments.delta" for e in first)
        # the next turn sends only the new items: the connection remembers the rest (store: false)
        second = turn(ws, {**base, "previous_response_id": first[-1]["response"]["id"], "input": [
            {"type": "function_call_output", "call_id": call["call_id"], "output": "hi"}]})
        assert second[-1]["response"]["output"][-1]["content"][0]["text"] == "Tool said: hi"
        chats = emu.chat_requests()
        assert len(chats) == 2
        msgs = chats[1]["body"]["messages"]
        assert [m["role"] for m in msgs] == ["user", "assistant", "tool"]
        assert [t["function"]["name"] for t in chats[1]["body"]["tools"]] == ["exec_command"]
    finally:
        ws.close()
    time.sleep(0.3)
    log = gw.log()[seen:]
    assert "Traceback" not in log and "crashed" not in log and " 101 " in log


def test_websocket_errors_are_events(gw, emu):
    ws = connect(gw)
    try:
        gone = turn(ws, {"model": "gpt-5.5", "previous_response_id": "resp_unknown", "input": [user("x")]})
        assert gone[-1]["type"] == "error" and gone[-1]["status"] == 400
        assert gone[-1]["error"]["code"] == "previous_response_not_found"
        emu.fault("context400")
        full = turn(ws, {"model": "gpt-5.5", "input": [user("long")]}, validate=False)
        assert full[-1]["type"] == "response.failed"
        assert full[-1]["response"]["error"]["code"] == "context_length_exceeded"
        emu.fault("midstream504")
        broken = turn(ws, {"model": "gpt-5.5", "input": [user("x")]})
        assert broken[-1]["type"] == "response.failed"
        ok = turn(ws, {"model": "gpt-5.5", "input": [user("still there?")]})  # the socket survives errors
        assert ok[-1]["response"]["output"][-1]["content"][0]["text"] == "Echo: still there?"
    finally:
        ws.close()


def test_websocket_upgrade_needs_the_client_key(make_gateway, emu, oauth_home, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("sk-good\n")
    gw = make_gateway("keyed", env=oauth_home["env"], args=("--set", f"qwen_client_keys_file={keys}"))
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        connect(gw)
    assert e.value.status_code == 401
    ws = connect(gw, Authorization="Bearer sk-good")
    try:
        assert turn(ws, {"model": "gpt-5.5", "input": [user("hi")]})[-1]["type"] == "response.completed"
    finally:
        ws.close()


def events_until_ended(ws: websocket.WebSocket, turns: int) -> list[dict]:
    """Every event until `turns` turns have ended (bounded by the socket's timeout)."""
    events: list[dict] = []
    while sum(e["type"] in ("response.completed", "response.failed", "error") for e in events) < turns:
        events.append(json.loads(ws.recv()))
    return events


def test_stream_id_lanes_run_side_by_side_each_in_order_and_echo_their_lane(gw, emu):
    """The spec's lanes: turns on one stream_id one after another in the order sent, lanes beside each other,
    every event of a lane's turn carrying its stream_id. Qwen answers after 3 s: both lanes' first turns reach
    it before either is answered, and lane a's second only once its first has ended."""
    emu.switches(first_byte_delay_ms=3000)
    ws = connect(gw)
    try:
        for lane, text in (("a", "one"), ("b.2", "two"), ("a", "three")):
            ws.send(json.dumps({"type": "response.create", "stream_id": lane, "model": "gpt-5.5",
                                "input": [user(text)]}))
        deadline = time.monotonic() + 10
        while len(emu.chat_requests()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        asked = [r["body"]["messages"][-1]["content"] for r in emu.chat_requests()]
        assert sorted(asked) == ["one", "two"]  # lane b did not wait for lane a's turn
        ws.settimeout(0.2)  # nothing has ended yet: Qwen has not answered
        with pytest.raises(websocket.WebSocketTimeoutException):
            while True:
                assert json.loads(ws.recv())["type"] not in ("response.completed", "response.failed")
        ws.settimeout(30)
        events = events_until_ended(ws, 3)
    finally:
        ws.close()
    assert [r["body"]["messages"][-1]["content"] for r in emu.chat_requests()][2] == "three"
    by_lane: dict[str, list[dict]] = {}
    for e in events:
        by_lane.setdefault(e["stream_id"], []).append(e)  # every event names its lane
    assert set(by_lane) == {"a", "b.2"}
    texts = {lane: [e["response"]["output"][-1]["content"][0]["text"] for e in es if e["type"] == "response.completed"]
             for lane, es in by_lane.items()}
    assert texts == {"a": ["Echo: one", "Echo: three"], "b.2": ["Echo: two"]}
    for e in events:
        validate_stream_event(e)


def test_a_stream_id_out_of_the_spec_or_a_lane_too_many_is_an_error_event(gw, emu):
    from qwen_gateway.turn.socket import MAX_LANES

    emu.switches(first_byte_delay_ms=2000)
    ws = connect(gw)
    try:
        bad = turn(ws, {"stream_id": "no spaces", "model": "gpt-5.5", "input": [user("x")]})
        assert bad[-1]["type"] == "error" and bad[-1]["error"]["param"] == "stream_id" and "stream_id" not in bad[-1]
        for i in range(MAX_LANES + 1):
            ws.send(json.dumps({"type": "response.create", "stream_id": f"lane{i}", "model": "gpt-5.5",
                                "input": [user(f"x{i}")]}))
        refused = json.loads(ws.recv())  # at once: the lanes before it are still waiting for Qwen
        assert refused["type"] == "error" and refused["stream_id"] == f"lane{MAX_LANES}"
        assert refused["error"]["code"] == "websocket_stream_limit_reached" and refused["status"] == 400
        events = events_until_ended(ws, MAX_LANES)
        assert sorted(e["stream_id"] for e in events if e["type"] == "response.completed") == \
            sorted(f"lane{i}" for i in range(MAX_LANES))
        # the lanes ended: a new one is welcome again
        assert turn(ws, {"stream_id": "again", "model": "gpt-5.5", "input": [user("y")]})[-1]["stream_id"] == "again"
    finally:
        ws.close()
