"""Every place a client can put its key, through a real mitmdump with `-w` and a named key (`qwen-keys add`):
the entrance takes it where docs/keys.md says (the Authorization, x-api-key and api-key headers, the WebSocket
subprotocol `openai-insecure-api-key.KEY`) and refuses it where it does not (a URL's query, HTTP basic auth,
a cookie), and in every case the key's bytes are nowhere in the flow file mitmproxy wrote, the gateway's
log, or what went to Qwen. mitmweb shows the same flow objects `-w` writes, scrubbed in `requestheaders`
before either sees them: the flow file stands for both (test_e2e_flow_records.py reads mitmweb's REST API for
the header case)."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
import websocket
from mitmproxy import io

from helpers.team import add_key, team_env

pytestmark = pytest.mark.e2e
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def post(gw, path: str, **headers: str) -> httpx.Response:
    return httpx.post(gw.url + path, json=CHAT, headers=headers, trust_env=False, timeout=30)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def socket_turn(gw, protocols: str) -> str:
    """A Responses WebSocket opened with `Sec-WebSocket-Protocol: protocols`, one turn: its answer's text."""
    ws = websocket.create_connection(gw.url.replace("http://", "ws://") + "/v1/responses", timeout=15,
                                     header=[f"Sec-WebSocket-Protocol: {protocols}"])
    try:
        ws.send(json.dumps({"type": "response.create", "model": "gpt-4o", "store": False,
                            "input": [{"type": "message", "role": "user", "content": [
                                {"type": "input_text", "text": "over a socket"}]}]}))
        while True:
            event = json.loads(ws.recv())
            if event["type"] in ("response.completed", "response.failed", "error"):
                return event["response"]["output"][-1]["content"][0]["text"]
    finally:
        ws.close()


def test_a_key_anywhere_is_checked_where_the_docs_say_and_kept_in_no_flow(tmp_path, emu, make_gateway):
    env = team_env(tmp_path, emu)
    key = add_key(env, "erin")
    flows = tmp_path / "flows.mitm"
    gw = make_gateway(env=env, args=("-w", str(flows)))

    # accepted: the headers of OpenAI's, Anthropic's and Azure's clients, and the browser WebSocket subprotocol
    for header in ({"Authorization": f"Bearer {key}"}, {"x-api-key": key}, {"api-key": key}):
        r = post(gw, "/v1/chat/completions", **header)
        assert r.status_code == 200, (header.keys(), r.text)
    assert socket_turn(gw, f"realtime, openai-insecure-api-key.{key}") == "Echo: over a socket"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:  # a wrong key there: the entrance's 401
        socket_turn(gw, "realtime, openai-insecure-api-key.sk-qg-not-a-key")
    assert refused.value.status_code == 401

    # a key in the URL: refused, even beside a good header (every hop logs URLs); a 401 that says where it goes
    for path in (f"/v1/chat/completions?api_key={key}", f"/v1/chat/completions?key={key}",
                 f"/v1/chat/completions?access_token={key}", f"/v1/chat/completions?api-key={key}",
                 f"/v1/chat/completions?limit=5&anything={key}"):
        r = post(gw, path, Authorization=f"Bearer {key}")
        assert r.status_code == 401, (path, r.text)
        error = r.json()["error"]
        assert error["code"] == "invalid_api_key" and "URL" in error["message"]
        assert "Authorization: Bearer" in error["message"] and key not in r.text
    r = httpx.get(gw.url + f"/v1/models?api_key={key}", trust_env=False, timeout=30)
    assert r.status_code == 401 and "URL" in r.json()["error"]["message"]

    # basic auth, the key as the password or the user: refused, naming the header to use
    for value in (basic("", key), basic(key, ""), basic("erin", key)):
        r = post(gw, "/v1/chat/completions", Authorization=value)
        assert r.status_code == 401 and "Basic" in r.json()["error"]["message"], r.text
    # a cookie: never a key (a browser sends its cookies to any page's request); beside a good header, served
    assert post(gw, "/v1/chat/completions", Cookie=f"api_key={key}").status_code == 401
    assert post(gw, "/v1/chat/completions", Cookie=f"session={key}; api_key={key}",
                Authorization=f"Bearer {key}").status_code == 200

    assert key not in json.dumps(emu.requests())  # nothing of it upstream
    gw.stop()  # -w holds every flow once mitmdump has stopped
    raw = flows.read_bytes()
    with open(flows, "rb") as f:
        kept = list(io.FlowReader(f).stream())
    assert len(kept) >= 16
    assert key.encode() not in raw, [fl.request.path for fl in kept if key.encode() in json.dumps(
        fl.get_state(), default=repr).encode()]
    # the records show where the key was, without it
    paths = [fl.request.path for fl in kept]
    assert "/v1/chat/completions?api_key=<redacted>" in paths
    protocols = [fl.request.headers.get("sec-websocket-protocol") for fl in kept if fl.websocket is not None]
    assert protocols and all(p == "realtime" for p in protocols), protocols
    assert key not in gw.log(), gw.log()[-3000:]


def test_a_keyless_gateway_serves_a_key_in_the_url_but_keeps_it_nowhere(tmp_path, emu, make_gateway):
    """No door to check it, the same scrubbing: the user's own OpenAI key in a URL (an unchanged client) never
    reaches Qwen, the flow file or the log."""
    env = team_env(tmp_path, emu)
    secret = "sk-proj-users-own-openai-key-0123456789"
    flows = tmp_path / "flows.mitm"
    gw = make_gateway(env=env, args=("-w", str(flows)))
    r = post(gw, f"/v1/chat/completions?api_key={secret}&key={secret}")
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Echo: hi"
    assert secret not in json.dumps(emu.requests())
    gw.stop()
    with open(flows, "rb") as f:
        (kept,) = list(io.FlowReader(f).stream())
    assert kept.request.path == "/v1/chat/completions?api_key=<redacted>&key=<redacted>"
    assert secret.encode() not in flows.read_bytes() and secret not in gw.log()
