"""The Qwen emulator itself (scripts/qwen_emulator.py), as a subprocess driven with httpx and the openai SDK."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote, urlencode

import httpx
import pytest

pytestmark = pytest.mark.e2e  # starts emulator processes

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "qwen_emulator.py"
sys.path.insert(0, str(ROOT / "scripts"))
from emulator.state import short  # noqa: E402  (how stats name a key)
CLIENT_ID = "f0304373b74a44d2b584a3fb70ca9e56"
SCOPE = "openid profile email model.completion"
API_KEY = "sk-emulator-test"
SEED = "seed-token-for-tests"
FORM = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"location": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}]
AUTH_401 = {"code": "invalid_api_key", "message": "invalid access token or token expired", "param": None,
            "type": "invalid_request_error"}


def launch(tmp: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    port_file = tmp / f"port-{secrets.token_hex(4)}"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--port", "0", "--port-file", str(port_file), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not (port_file.exists() and port_file.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, "emulator did not start"
        time.sleep(0.02)
    return proc, int(port_file.read_text())


def terminate(proc: subprocess.Popen, sig=signal.SIGTERM) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


class Emu:
    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.url, timeout=10, trust_env=False)

    def admin(self, method: str, name: str, body: dict | None = None):
        r = self.http.request(method, f"/_emulator/{name}", json=body)
        assert r.status_code == 200, r.text
        return r.json()

    def switches(self, **values) -> None:
        self.admin("POST", "switches", values)

    def fault(self, kind: str, **kw) -> None:
        self.admin("POST", "fault", {"kind": kind, **kw})

    def chat(self, content="hello there", token=API_KEY, path="/v1/chat/completions", **body) -> httpx.Response:
        body = {"model": "coder-model", "messages": [{"role": "user", "content": content}], **body}
        return self.http.post(path, json=body, headers={"Authorization": f"Bearer {token}"} if token else {})

    def events(self, content="hello there", **body) -> list:
        """A streamed answer's SSE events, parsed ("[DONE]" kept as a string)."""
        r = self.chat(content, stream=True, **body)
        assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
        assert r.headers["transfer-encoding"] == "chunked" and "content-length" not in r.headers
        return parse_sse(r.text)

    def form(self, path: str, data: dict) -> httpx.Response:
        return self.http.post(path, content=urlencode(data, quote_via=quote), headers=FORM)


def parse_sse(text: str) -> list:
    assert text.endswith("\n\n")
    out = []
    for event in text[:-2].split("\n\n"):
        assert event.startswith("data: "), event
        out.append(event[6:] if event == "data: [DONE]" else json.loads(event[6:]))
    return out


def emulator_fixtures(*args: str):
    """The module's emulator process (started once, with `args`) and a per-test handle on it, reset."""

    @pytest.fixture(scope="module")
    def proc(tmp_path_factory):
        p, port = launch(tmp_path_factory.mktemp("emu"), *args)
        yield p, port
        assert terminate(p) == 0

    @pytest.fixture
    def emu(proc) -> Emu:
        e = Emu(proc[1])
        e.admin("POST", "reset")
        yield e
        e.http.close()

    return proc, emu


proc, emu = emulator_fixtures("--quiet", "--api-key", API_KEY, "--seed-token", SEED)


# ---- process -----------------------------------------------------------------------------------


def test_starts_on_loopback_and_stops_on_signals(tmp_path):
    for sig in (signal.SIGTERM, signal.SIGINT):
        p, port = launch(tmp_path)
        assert p.stdout.readline() == f"Qwen emulator listening on http://127.0.0.1:{port}\n"
        with socket.create_connection(("127.0.0.1", port)) as s:
            assert s.getsockname()[0] == "127.0.0.1"
        assert terminate(p, sig) == 0


def test_a_stalled_stream_neither_blocks_others_nor_shutdown(tmp_path):
    p, port = launch(tmp_path, "--quiet", "--api-key", API_KEY)
    e = Emu(port)
    e.fault("stall")  # stall_seconds defaults to 30
    with httpx.stream("POST", e.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {API_KEY}"},
                      json={"model": "coder-model", "messages": [{"role": "user", "content": "x"}], "stream": True},
                      timeout=10, trust_env=False) as r:
        first = next(r.iter_lines())
        assert json.loads(first[6:])["choices"][0]["delta"]["role"] == "assistant"
        assert e.chat("meanwhile").json()["choices"][0]["message"]["content"] == "Echo: meanwhile"
        t0 = time.monotonic()
        assert terminate(p) == 0
        assert time.monotonic() - t0 < 3


def test_in_process_start_and_stop():
    sys.path.insert(0, str(ROOT / "scripts"))
    import emulator

    h = emulator.start("127.0.0.1", 0, api_keys=["k-inproc"])
    try:
        assert h.url == f"http://127.0.0.1:{h.port}"
        r = httpx.post(h.url + "/compatible-mode/v1/chat/completions", trust_env=False,
                       headers={"Authorization": "Bearer k-inproc"},
                       json={"model": "qwen-plus", "messages": [{"role": "user", "content": "in"}]})
        assert r.json()["choices"][0]["message"]["content"] == "Echo: in"
        assert h.state.stats["chat_requests"] == 1
    finally:
        h.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(h.url + "/v1/models", trust_env=False)


def test_keep_alive_serves_several_requests_on_one_connection(emu):
    with socket.create_connection(("127.0.0.1", emu.port)) as s:
        f = s.makefile("rb")
        for _ in range(3):
            s.sendall(f"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\r\n".encode())
            assert f.readline().startswith(b"HTTP/1.1 200")
            headers = {}
            while (line := f.readline()) != b"\r\n":
                k, v = line.decode().split(":", 1)
                headers[k.lower()] = v.strip()
            assert json.loads(f.read(int(headers["content-length"])))["object"] == "list"


# ---- OAuth -------------------------------------------------------------------------------------


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(32)
    return verifier, base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def device(emu: Emu, challenge: str) -> dict:
    r = emu.form("/api/v1/oauth2/device/code", {"client_id": CLIENT_ID, "scope": SCOPE, "code_challenge": challenge,
                                                "code_challenge_method": "S256"})
    assert r.status_code == 200, r.text
    return r.json()


def poll(emu: Emu, device_code: str, verifier: str) -> httpx.Response:
    return emu.form("/api/v1/oauth2/token", {"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                                             "client_id": CLIENT_ID, "device_code": device_code,
                                             "code_verifier": verifier})


def refresh(emu: Emu, rt: str, client_id: str = CLIENT_ID) -> httpx.Response:
    return emu.form("/api/v1/oauth2/token", {"grant_type": "refresh_token", "refresh_token": rt,
                                             "client_id": client_id})


def test_device_flow_with_pkce(emu):
    verifier, challenge = pkce()
    d = device(emu, challenge)
    assert set(d) == {"device_code", "user_code", "verification_uri", "verification_uri_complete", "expires_in"}
    assert re.fullmatch(r"[A-Z0-9]{8}", d["user_code"]) and d["expires_in"] == 1800
    assert d["verification_uri_complete"] == f"{emu.url}/authorize?user_code={d['user_code']}&client=qwen-code"
    r = poll(emu, d["device_code"], verifier)
    assert r.status_code == 400 and r.json()["error"] == "authorization_pending" and r.json()["error_description"]
    emu.admin("POST", "approve", {"user_code": d["user_code"]})
    r = poll(emu, d["device_code"], pkce()[0])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = poll(emu, d["device_code"], verifier)
    assert r.status_code == 200
    tok = r.json()
    assert list(tok) == ["access_token", "refresh_token", "token_type", "expires_in", "resource_url"]
    assert tok["token_type"] == "Bearer" and tok["expires_in"] == 3600 and tok["resource_url"] == emu.url
    assert emu.chat(token=tok["access_token"]).status_code == 200
    assert poll(emu, d["device_code"], verifier).status_code == 401  # used up
    stats = emu.admin("GET", "stats")
    assert stats["device_code_calls"] == 1 and stats["token_calls"] == 4 and stats["refresh_calls"] == 0


def test_device_code_request_is_checked(emu):
    good = {"client_id": CLIENT_ID, "scope": SCOPE, "code_challenge": pkce()[1], "code_challenge_method": "S256"}
    r = emu.form("/api/v1/oauth2/device/code", {**good, "client_id": "someone-else"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_client"
    assert emu.form("/api/v1/oauth2/device/code", {**good, "code_challenge_method": "plain"}).status_code == 400
    assert emu.form("/api/v1/oauth2/device/code", {**good, "scope": "openid"}).status_code == 400
    emu.switches(interval=5, device_expires_in=60)
    d = device(emu, good["code_challenge"])
    assert d["interval"] == 5 and d["expires_in"] == 60


@pytest.mark.parametrize("status", [429, 400])
def test_slow_down_for_n_polls(emu, status):
    verifier, challenge = pkce()
    emu.switches(slow_down=2, slow_down_status=status, auto_approve=True)
    d = device(emu, challenge)
    for _ in range(2):
        r = poll(emu, d["device_code"], verifier)
        assert r.status_code == status and r.json()["error"] == "slow_down"
    assert poll(emu, d["device_code"], verifier).status_code == 200


@pytest.mark.parametrize("action,error", [("deny", "access_denied"), ("expire", "expired_token")])
def test_denied_and_expired(emu, action, error):
    verifier, challenge = pkce()
    d = device(emu, challenge)
    emu.admin("POST", action, {"device_code": d["device_code"]})
    for _ in range(2):
        r = poll(emu, d["device_code"], verifier)
        assert r.status_code == 400 and r.json()["error"] == error


def test_device_code_lifetime_and_unknown_codes(emu):
    emu.switches(device_expires_in=0)
    verifier, challenge = pkce()
    d = device(emu, challenge)
    time.sleep(0.01)
    assert poll(emu, d["device_code"], verifier).json()["error"] == "expired_token"
    assert poll(emu, "made-up", verifier).status_code == 401


def test_resource_url_switch(emu):
    for value, expected in (("127.0.0.1:1234", "127.0.0.1:1234"), ("none", None)):
        emu.switches(resource_url=value, auto_approve=True)
        verifier, challenge = pkce()
        tok = poll(emu, device(emu, challenge)["device_code"], verifier).json()
        assert tok.get("resource_url") == expected


def test_refresh_rotates_and_old_refresh_tokens_die(emu):
    issued = emu.admin("POST", "tokens", {"expires_in": 60})
    assert issued["expiry_date"] // 1000 == pytest.approx(time.time() + 60, abs=2)
    r = refresh(emu, issued["refresh_token"])
    assert r.status_code == 200
    new = r.json()
    assert list(new) == ["access_token", "token_type", "expires_in", "refresh_token", "resource_url"]
    assert new["refresh_token"] != issued["refresh_token"] and new["access_token"] != issued["access_token"]
    assert emu.chat(token=new["access_token"]).status_code == 200
    r = refresh(emu, issued["refresh_token"])
    assert r.status_code == 400
    assert r.content == b'{"error":"invalid_request","error_description":"Invalid refresh token or client_id"}'
    assert refresh(emu, new["refresh_token"], client_id="nope").status_code == 400
    emu.switches(refresh_fail_status=401)
    assert refresh(emu, "unknown").status_code == 401
    assert emu.admin("GET", "stats")["refresh_calls"] == 4


def test_refresh_without_rotation_or_resource_url(emu):
    issued = emu.admin("POST", "tokens", {"refresh_token": "rt-fixed"})
    emu.switches(rotate_refresh_token=False, refresh_omit_resource_url=True, expires_in=5)
    for _ in range(2):
        r = refresh(emu, "rt-fixed")
        assert r.status_code == 200 and r.json()["expires_in"] == 5
        assert "refresh_token" not in r.json() and "resource_url" not in r.json()
    assert emu.chat(token=issued["access_token"]).status_code == 200


def test_expired_and_unknown_tokens_get_the_401_body(emu):
    expired = emu.admin("POST", "tokens", {"expires_in": -1})["access_token"]
    for token in (expired, "never-issued", None):
        r = emu.chat(token=token)
        assert r.status_code == 401 and r.json()["error"] == AUTH_401
        assert uuid.UUID(r.json()["request_id"])
    assert emu.chat(token=SEED).status_code == 200  # --seed-token
    key = emu.admin("POST", "tokens", {"access_token": "sk-added", "kind": "key"})
    assert key["refresh_token"] is None and emu.chat(token="sk-added").status_code == 200


def test_oauth_faults(emu):
    issued = emu.admin("POST", "tokens", {})
    emu.fault("oauth500")
    assert refresh(emu, issued["refresh_token"]).status_code == 500
    emu.fault("oauth503")
    assert refresh(emu, issued["refresh_token"]).status_code == 503
    emu.fault("oauth_reset")
    with pytest.raises(httpx.TransportError):
        refresh(emu, issued["refresh_token"])
    emu.fault("oauth_slow", seconds=0.3)
    t0 = time.monotonic()
    r = refresh(emu, issued["refresh_token"])
    assert r.status_code == 200 and time.monotonic() - t0 >= 0.3
    emu.switches(refresh_delay_ms=300)
    t0 = time.monotonic()
    assert refresh(emu, r.json()["refresh_token"]).status_code == 200 and time.monotonic() - t0 >= 0.3
    assert emu.admin("GET", "stats")["refresh_calls"] == 5
    emu.fault("oauth500")
    assert emu.form("/api/v1/oauth2/device/code", {}).status_code == 500  # device code requests too


# ---- chat, non-stream -------------------------------------------------------------------------


def test_chat_non_stream(emu):
    for path in ("/v1/chat/completions", "/compatible-mode/v1/chat/completions"):
        r = emu.chat([{"type": "text", "text": "two "}, {"type": "image_url", "image_url": {"url": "x"}},
                      {"type": "text", "text": "parts"}], path=path, model="qwen3.6-plus")
        assert r.status_code == 200 and int(r.headers["content-length"]) == len(r.content)
        c = r.json()
        assert list(c) == ["id", "object", "created", "model", "choices", "usage", "system_fingerprint"]
        assert c["id"].startswith("chatcmpl-") and c["object"] == "chat.completion" and c["model"] == "qwen3.6-plus"
        assert c["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Echo: two parts",
                                                         "reasoning_content": "Thinking about it."},
                                 "finish_reason": "stop", "logprobs": None}]
        u = c["usage"]
        assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] > 0
        assert u["prompt_tokens_details"] == {"cached_tokens": 0}
    assert len(emu.chat(n=3).json()["choices"]) == 3
    emu.switches(reply="Fixed.", reasoning=False, usage_top_level_cached=True, usage_cached_tokens=7)
    c = emu.chat().json()
    assert c["choices"][0]["message"] == {"role": "assistant", "content": "Fixed."}
    assert c["usage"]["cached_tokens"] == 7 and "prompt_tokens_details" not in c["usage"]
    assert "reasoning_content" in emu.chat(enable_thinking=True).json()["choices"][0]["message"]
    emu.switches(reasoning=True)
    assert "reasoning_content" not in emu.chat(enable_thinking=False).json()["choices"][0]["message"]


def test_a_stop_sequence_ends_the_text_before_it_without_saying_so(emu):
    """Compatible mode's `stop`: the text ends before the first sequence found, which is not written, and
    the finish reason is "stop", as at a natural end."""
    emu.switches(reply="Hello END world STOP")
    for stop in (["STOP", "END"], "END"):
        c = emu.chat(stop=stop).json()["choices"][0]
        assert (c["message"]["content"], c["finish_reason"]) == ("Hello ", "stop")
        streamed = [e for e in emu.events(stop=stop) if isinstance(e, dict) and e["choices"]]
        assert "".join(e["choices"][0]["delta"].get("content") or "" for e in streamed) == "Hello "
        assert streamed[-1]["choices"][0]["finish_reason"] == "stop"
    assert emu.chat(stop=["nowhere"]).json()["choices"][0]["message"]["content"] == "Hello END world STOP"


def test_chat_validation(emu):
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    assert emu.http.post("/v1/chat/completions", content=b"{nope", headers=headers).status_code == 400
    assert emu.chat(messages=[]).status_code == 400
    r = emu.http.post("/v1/chat/completions", json={"model": "qwen-max"}, headers=headers)
    assert r.status_code == 400
    r = emu.chat(model="gpt-4o")
    assert r.status_code == 400 and r.json()["error"]["code"] == "model_not_found"
    assert r.json()["error"]["message"] == "The model `gpt-4o` does not exist or you do not have access to it."
    r = emu.chat(response_format={"type": "json_object"}, enable_thinking=True)
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "Json mode response is not supported when enable_thinking is true"
    # coder-model thinks unless told otherwise (see test_emulator_rules.py for every rule)
    assert emu.chat(response_format={"type": "json_object"}, enable_thinking=False).status_code == 200


def test_tool_calls_non_stream(emu):
    c = emu.chat("weather? (get_weather)", tools=TOOLS).json()["choices"][0]
    assert c["finish_reason"] == "tool_calls"
    (call,) = c["message"]["tool_calls"]
    assert re.fullmatch(r"call_[0-9a-f]+", call["id"]) and call["type"] == "function"
    assert call["function"] == {"name": "get_weather", "arguments": '{"location": "Paris"}'}
    forced = {"type": "function", "function": {"name": "get_time"}}
    call = emu.chat(tools=TOOLS, tool_choice=forced, enable_thinking=False).json()["choices"][0]["message"][
        "tool_calls"][0]
    assert call["function"] == {"name": "get_time", "arguments": "{}"}
    assert emu.chat("plain", tools=TOOLS, tool_choice="none").json()["choices"][0]["message"]["content"] == \
        "Echo: plain"
    history = [{"role": "user", "content": "weather?"},
               {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function", "function":
                                                                   {"name": "get_weather", "arguments": "{}"}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    c = emu.chat(messages=history, tools=TOOLS).json()["choices"][0]
    assert c["message"]["content"] == "Tool said: sunny" and c["finish_reason"] == "stop"
    emu.switches(tool_arguments={"cmd": "ls"}, tool_calls_count=2, tool_calls="always")
    calls = emu.chat(tools=TOOLS).json()["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["arguments"] for c in calls] == ['{"cmd": "ls"}'] * 2


# Tools as agent clients offer them: required fields of several kinds (Claude Code's Agent, Codex's
# exec_command and shell, a weather tool).
AGENT_TOOLS = [
    {"type": "function", "function": {"name": "Agent", "parameters": {
        "type": "object", "required": ["description", "prompt", "subagent_type"], "properties": {
            "description": {"type": "string"}, "prompt": {"type": "string"}, "subagent_type": {"type": "string"},
            "model": {"type": "string", "enum": ["sonnet", "opus"]}}}}},
    {"type": "function", "function": {"name": "exec_command", "parameters": {
        "type": "object", "required": ["cmd"], "properties": {"cmd": {"type": "string"},
                                                             "yield_time_ms": {"type": "number"}}}}},
    {"type": "function", "function": {"name": "shell", "parameters": {
        "type": "object", "required": ["command", "timeout_ms", "with_escalated_permissions", "mode"],
        "properties": {"command": {"type": "array", "items": {"type": "string"}},
                       "timeout_ms": {"type": "integer", "minimum": 100},
                       "with_escalated_permissions": {"type": "boolean"},
                       "mode": {"anyOf": [{"type": "null"}, {"type": "string", "enum": ["fast", "slow"]}]}}}}},
    {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "required": ["location"], "properties": {"location": {"type": "string"}}}}},
]


def test_demo_answers_in_words_unless_the_prompt_asks_for_a_tool(emu):
    """What an agent client shows against the README's emulator: `hello` is answered in words even with tools
    offered (Claude Code's `<system-reminder>` around the prompt is not read as asking); naming a tool, or
    tool_choice forcing one, calls it with its required fields filled."""
    c = emu.chat("hello", tools=AGENT_TOOLS).json()["choices"][0]
    assert c["finish_reason"] == "stop" and c["message"]["content"] == "Echo: hello"
    assert "tool_calls" not in c["message"]
    wrapped = [{"type": "text", "text": "<system-reminder>Use the Agent tool or exec_command.</system-reminder>"},
               {"type": "text", "text": "hello"}]
    c = emu.chat(wrapped, tools=AGENT_TOOLS).json()["choices"][0]
    assert c["finish_reason"] == "stop" and "tool_calls" not in c["message"]
    c = emu.chat("use exec_command to list the files", tools=AGENT_TOOLS).json()["choices"][0]
    assert c["finish_reason"] == "tool_calls"
    (call,) = c["message"]["tool_calls"]
    assert call["function"]["name"] == "exec_command"
    assert json.loads(call["function"]["arguments"]) == {"cmd": "echo hello"}
    events = emu.events("ask an Agent", tools=AGENT_TOOLS)
    args = "".join(d["function"].get("arguments", "") for e in events[:-1] if e["choices"]
                   for d in e["choices"][0]["delta"].get("tool_calls", []))
    assert json.loads(args) == {"description": "Say hello", "prompt": "hello", "subagent_type": "hello"}
    forced = emu.chat("hi", tools=AGENT_TOOLS, tool_choice="required", enable_thinking=False).json()
    assert forced["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "Agent"
    emu.switches(tool_calls="always")
    calls = emu.chat("hello", tools=AGENT_TOOLS).json()["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["Agent"]
    emu.switches(tool_calls="never")
    assert "tool_calls" not in emu.chat("use shell", tools=AGENT_TOOLS).json()["choices"][0]["message"]
    r = emu.http.post("/_emulator/switches", json={"tool_calls": "sometimes"})
    assert r.status_code == 400 and "asked, always, never" in r.text


def test_a_prompt_that_forbids_tools_is_answered_in_words(emu):
    """Claude Code's request for a summary when it compacts names its tools only to forbid them; the emulator
    called Bash, and Claude Code's compaction failed ("summarization produced empty response")."""
    prompt = ("CRITICAL: Respond with TEXT ONLY. Do NOT call any tools.\n\n- Do NOT use Read, Bash, Grep, or ANY "
              "other tool.\nYour task is to create a detailed summary of the conversation so far.")
    c = emu.chat(prompt, tools=AGENT_TOOLS + [{"type": "function", "function": {"name": "Bash"}}]).json()["choices"][0]
    assert c["finish_reason"] == "stop" and "tool_calls" not in c["message"]
    assert c["message"]["content"].startswith("Echo: CRITICAL: Respond with TEXT ONLY.")


def test_tool_arguments_fill_each_required_field_with_a_value_of_its_type(emu):
    emu.switches(tool_calls="always", tool_calls_count=4)
    calls = emu.chat("hi", tools=AGENT_TOOLS).json()["choices"][0]["message"]["tool_calls"]
    args = {c["function"]["name"]: json.loads(c["function"]["arguments"]) for c in calls}
    assert args["shell"] == {"command": ["echo", "hello"], "timeout_ms": 100, "with_escalated_permissions": False,
                             "mode": "fast"}
    assert args["get_weather"] == {"location": "Paris"} and args["exec_command"] == {"cmd": "echo hello"}
    emu.switches(tool_arguments={"cmd": "ls"}, tool_calls_count=1)  # the switch still wins
    calls = emu.chat("use shell", tools=AGENT_TOOLS).json()["choices"][0]["message"]["tool_calls"]
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in calls] == [("shell", '{"cmd": "ls"}')]


# ---- chat, stream ------------------------------------------------------------------------------


def kinds(events: list) -> list[str]:
    """Each event's kind, in order: role, reasoning, content, tool, finish, usage, done."""
    out = []
    for ev in events:
        if ev == "[DONE]":
            out.append("done")
        elif not ev["choices"]:
            out.append("usage")
        elif ev["choices"][0]["finish_reason"]:
            out.append("finish")
        else:
            delta = ev["choices"][0]["delta"]
            out.append("role" if "role" in delta else "reasoning" if "reasoning_content" in delta
                       else "content" if "content" in delta else "tool")
    return out


def squeeze(seq: list[str]) -> list[str]:
    return [k for i, k in enumerate(seq) if i == 0 or seq[i - 1] != k]


def test_stream_sequence(emu):
    events = emu.events("stream me please", stream_options={"include_usage": True})
    assert squeeze(kinds(events)) == ["role", "reasoning", "content", "finish", "usage", "done"]
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks[:-1]) == "Thinking about it."
    assert [c["choices"][0]["delta"]["content"] for c in chunks if kinds([c]) == ["content"]] == \
        ["Echo: ", "stream ", "me ", "please"]
    assert {c["id"] for c in chunks} == {chunks[0]["id"]} and len({c["created"] for c in chunks}) == 1
    for c in chunks:
        assert c["object"] == "chat.completion.chunk" and c["model"] == "coder-model"
        assert c["system_fingerprint"] is None
        assert all(ch["logprobs"] is None for ch in c["choices"])
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}


def test_stream_tool_call_sequence(emu):
    events = emu.events("weather? (get_weather)", tools=TOOLS, stream_options={"include_usage": True})
    assert squeeze(kinds(events)) == ["role", "reasoning", "tool", "finish", "usage", "done"]
    frags = [c["choices"][0]["delta"]["tool_calls"] for c in events if kinds([c]) == ["tool"]]
    first, rest = frags[0][0], [f[0] for f in frags[1:]]
    assert first["index"] == 0 and first["id"].startswith("call_") and first["type"] == "function"
    assert first["function"] == {"name": "get_weather", "arguments": ""}
    assert rest and all(set(f) == {"index", "function"} and set(f["function"]) == {"arguments"} for f in rest)
    assert json.loads("".join(f["function"]["arguments"] for f in rest)) == {"location": "Paris"}
    assert events[-3]["choices"][0]["finish_reason"] == "tool_calls"


def test_no_usage_chunk_unless_asked(emu):
    for extra in ({}, {"stream_options": {"include_usage": False}}):
        events = emu.events(**extra)
        assert "usage" not in kinds(events) and all(e["usage"] is None for e in events[:-1])
        assert kinds(events)[-2:] == ["finish", "done"]


def test_stream_switches(emu):
    emu.switches(cumulative_deltas=True, reasoning=False)
    contents = [e["choices"][0]["delta"]["content"] for e in emu.events("a b")[1:-2]]
    assert contents == ["Echo: ", "Echo: a ", "Echo: a b"]
    emu.switches(cumulative_deltas=False, chunk_count=2, reply="abcdef")
    assert [e["choices"][0]["delta"]["content"] for e in emu.events()[1:-2]] == ["abc", "def"]
    emu.switches(usage_in_finish_chunk=True, usage_top_level_cached=True, usage_cached_tokens=3)
    events = emu.events(stream_options={"include_usage": True})
    assert kinds(events)[-2:] == ["finish", "done"] and events[-2]["usage"]["cached_tokens"] == 3
    emu.switches(usage_in_finish_chunk=False, duplicate_finish=True)
    assert kinds(emu.events())[-3:] == ["finish", "finish", "done"]
    emu.switches(duplicate_finish=False, think_leak=True, reply=None, reasoning=True, chunk_count=1)
    events = emu.events("x")
    assert "reasoning" not in kinds(events)
    assert events[1]["choices"][0]["delta"]["content"] == "<think>Thinking about it.</think>Echo: x"


def test_stream_tool_call_quirks(emu):
    emu.switches(tool_calls="always", tool_calls_count=2, tool_index_collision=True, split_tool_name=True,
                 reasoning=False)
    events = emu.events(tools=TOOLS)
    frags = [e["choices"][0]["delta"]["tool_calls"][0] for e in events if kinds([e]) == ["tool"]]
    heads = [f for f in frags if "id" in f]
    assert len(heads) == 2 and {f["index"] for f in frags} == {0}
    assert all("name" not in f["function"] for f in heads)  # the name follows in its own chunk
    names = [f["function"]["name"] for f in frags if "name" in f["function"]]
    assert names == ["get_weather", "get_time"]


def raw_chunks(port: int, body: dict) -> tuple[bytes, list[bytes]]:
    """A streamed answer's HTTP chunks as they came, and the reassembled body."""
    payload = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Authorization: Bearer " + API_KEY.encode() + b"\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))
        f = s.makefile("rb")
        while f.readline() != b"\r\n":
            pass
        chunks = []
        while size := int(f.readline(), 16):
            chunks.append(f.read(size))
            assert f.readline() == b"\r\n"
    return b"".join(chunks), chunks


def test_split_writes_reassemble_to_the_same_stream(emu):
    def normalised(text: bytes) -> str:
        return re.sub(rb'"(id|created)":("[^"]*"|\d+)', b"", text).decode()

    body = {"model": "coder-model", "messages": [{"role": "user", "content": "héllo wörld ✓"}], "stream": True,
            "stream_options": {"include_usage": True}, "tools": TOOLS}
    whole, whole_chunks = raw_chunks(emu.port, body)
    emu.switches(split_writes=True)
    split, split_chunks = raw_chunks(emu.port, body)
    assert normalised(split) == normalised(whole)
    assert len(split_chunks) >= 3 * len(whole_chunks)
    assert any(not c.endswith(b"\n\n") and c.endswith(b"\n") for c in split_chunks)  # cut between the newlines


# ---- faults ------------------------------------------------------------------------------------

EXACT = {
    "quota429": (429, b'{"error":{"code":"insufficient_quota","message":"Free allocated quota exceeded.",'
                      b'"param":null,"type":"insufficient_quota"}}'),
    "quota429_billing": (429, b'{"error":{"code":"insufficient_quota","message":"You exceeded your current quota, '
                              b'please check your plan and billing details. For details, see: https://help.aliyun.com'
                              b'/zh/model-studio/error-code#token-limit","param":null,"type":"insufficient_quota"}}'),
    "quota403": (403, b'{"error":{"code":"insufficient_quota","message":"Free allocated quota exceeded.",'
                      b'"param":null,"type":"insufficient_quota"}}'),
    "throttle429": (429, b'{"error":{"code":"Throttling","message":"Requests throttling triggered.","param":null,'
                         b'"type":"throttling"}}'),
    "context400": (400, b'{"error":{"code":"invalid_parameter_error","message":"Range of input length should be '
                        b'[1, 983616]","param":null,"type":"invalid_request_error"}}'),
    "timeout504": (504, b"stream timeout"),
    "server500_empty": (500, b""),
    "invalid_json": (200, b"{not json"),
    # what ran out (Model Studio's error messages, the Coding Plan FAQ; limit_requests and limit_burst_rate byte
    # for byte as users captured them)
    "hour_quota429": (429, b'{"error":{"code":"insufficient_quota","message":"hour allocated quota exceeded",'
                           b'"param":null,"type":"insufficient_quota"}}'),
    "week_quota429": (429, b'{"error":{"code":"insufficient_quota","message":"week allocated quota exceeded",'
                           b'"param":null,"type":"insufficient_quota"}}'),
    "month_quota429": (429, b'{"error":{"code":"insufficient_quota","message":"month allocated quota exceeded",'
                            b'"param":null,"type":"insufficient_quota"}}'),
    "usage429": (429, b'{"error":{"code":"insufficient_quota","message":"usage allocated quota exceeded. please try '
                      b'again later.","param":null,"type":"insufficient_quota"}}'),
    "concurrency429": (429, b'{"error":{"code":"insufficient_quota","message":"concurrency allocated quota exceeded. '
                            b'please try again later.","param":null,"type":"insufficient_quota"}}'),
    "rpm429": (429, b'{"error":{"message":"You have exceeded your current request limit. For details, see: https://'
                    b'help.aliyun.com/zh/model-studio/error-code#rate-limit","type":"limit_requests",'
                    b'"code":"limit_requests"}}'),
    "burst429": (429, b'{"error":{"message":"Request rate increased too quickly. To ensure system stability, please '
                      b'adjust your client logic to scale requests more smoothly over time.","type":"limit_burst_rate",'
                      b'"param":"","code":"limit_burst_rate"}}'),
}


@pytest.mark.parametrize("kind", sorted(EXACT))
@pytest.mark.parametrize("stream", [False, True])
def test_fault_bodies(emu, kind, stream):
    emu.fault(kind)
    r = emu.chat(stream=stream)
    assert (r.status_code, r.content) == EXACT[kind]
    if kind == "invalid_json":
        assert r.headers["content-type"] == "application/json"
    assert emu.chat().status_code == 200  # consumed


@pytest.mark.parametrize("kind,status", [("auth401", 401), ("server500", 500), ("server503", 503)])
def test_fault_statuses(emu, kind, status):
    emu.fault(kind)
    r = emu.chat()
    assert r.status_code == status and r.json()["error"]["type"]
    if kind == "auth401":
        assert r.json()["error"] == AUTH_401


def test_fault_matching_count_and_retry_after(emu):
    emu.fault("throttle429", retry_after=7, count=2, token=SEED, path="compatible-mode")
    assert emu.chat(token=SEED).status_code == 200  # wrong path
    assert emu.chat(path="/compatible-mode/v1/chat/completions").status_code == 200  # wrong token
    for _ in range(2):
        r = emu.chat(token=SEED, path="/compatible-mode/v1/chat/completions")
        assert r.status_code == 429 and r.headers["retry-after"] == "7"
    assert emu.chat(token=SEED, path="/compatible-mode/v1/chat/completions").status_code == 200
    emu.fault("quota429", path="embeddings")
    r = emu.http.post("/v1/embeddings", json={"model": "text-embedding-v4", "input": "x"},
                      headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 429
    r = emu.http.post("/_emulator/fault", json={"kind": "made-up"})
    assert r.status_code == 400


def test_reset_faults(emu):
    emu.fault("reset_before_headers")
    with pytest.raises(httpx.TransportError):
        emu.chat()
    emu.fault("reset_midstream")
    received = []
    with pytest.raises(httpx.TransportError):
        with emu.http.stream("POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {API_KEY}"},
                             json={"model": "coder-model", "messages": [{"role": "user", "content": "a b c d"}],
                                   "stream": True}) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                received.append(line)
    assert any('"content":"Echo: "' in line for line in received)
    for kind in ("reset_midstream", "stall"):  # a whole-body answer: headers, half the body, then RST
        emu.fault(kind, seconds=0.2)
        with pytest.raises(httpx.TransportError):
            emu.chat()
    assert emu.chat().status_code == 200


def cut_stream(port: int, body: dict, path: str = "/v1/chat/completions") -> tuple[bytes, str]:
    """A streamed answer's body as it came, and how it ended: "done" (the last chunk), "eof" (the connection
    closed before it), "reset", or "silent" (nothing for a second, the connection open)."""
    payload = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(1)
        s.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_KEY.encode()
                  + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload))
        raw = b""
        try:
            while part := s.recv(65536):
                raw += part
                if raw.endswith(b"\r\n0\r\n\r\n"):
                    break
            ended = "eof"
        except ConnectionResetError:
            ended = "reset"
        except TimeoutError:
            ended = "silent"
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    body_bytes = b""
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line, 16)
        if size == 0:
            return body_bytes, "done" if ended == "eof" or raw.endswith(b"0\r\n\r\n") else ended
        body_bytes, rest = body_bytes + rest[:size], rest[size + 2:]
    return body_bytes, ended


def unvaried(data: bytes, like: bytes) -> bytes:
    """`data` with the bytes at the places of `like`'s ids and times blanked (they change between two answers)."""
    out = bytearray(data)
    for m in re.finditer(rb'"(id|created)":("[^"]*"|\d+)', like):
        out[m.start():m.end()] = b"_" * len(out[m.start():m.end()])
    return bytes(out)


@pytest.mark.parametrize("how,ended", [("fin", "eof"), ("rst", "reset"), ("end", "done"), ("stall", "silent")])
def test_a_cut_falls_on_the_byte_asked_whatever_the_events(emu, how, ended):
    """A network cut lands anywhere (dashscope-rules.md, "Learned since 2026-11-26"): inside a `data:` line, inside a
    multibyte character, between the two newlines of an event's end, before the finish chunk."""
    body = {"model": "coder-model", "messages": [{"role": "user", "content": "héllo wörld ✓ 🎉"}], "stream": True,
            "stream_options": {"include_usage": True}}
    whole, done = cut_stream(emu.port, body)
    assert done == "done" and whole.endswith(b"data: [DONE]\n\n")
    emoji = whole.index("🎉".encode())
    for at in (0, 7, emoji + 1, emoji + 3, whole.index(b"\n\n") + 1, whole.index(b'"finish_reason":"stop"') - 40):
        emu.fault("cut", at=at, how=how, seconds=2)
        got, how_it_ended = cut_stream(emu.port, body)
        assert len(got) == at and how_it_ended == ended, (at, how_it_ended)
        assert unvaried(got, whole) == unvaried(whole[:at], whole)
    emu.switches(split_writes=True)  # each event in several writes: the cut still on its byte
    emu.fault("cut", at=emoji + 2, how=how, seconds=2)
    got, _ = cut_stream(emu.port, body)
    assert len(got) == emoji + 2


def test_a_cut_inside_a_text_falls_in_its_middle(emu):
    body = {"model": "coder-model", "messages": [{"role": "user", "content": "say héllo"}], "stream": True}
    whole, _ = cut_stream(emu.port, body)
    for inside in ('"content":"say "', "é"):  # a data line's middle; a character's (its first byte of two)
        emu.fault("cut", inside=inside, how="rst")
        got, ended = cut_stream(emu.port, body)
        assert ended == "reset" and len(got) == whole.index(inside.encode()) + len(inside.encode()) // 2


def test_a_cut_is_refused_without_its_byte(emu):
    for bad in ({"kind": "cut"}, {"kind": "cut", "at": -1}, {"kind": "cut", "at": 3, "how": "gently"},
                {"kind": "cut", "inside": ""}, {"kind": "cut", "inside": "x", "at": 3}):
        r = emu.http.post("/_emulator/fault", json=bad)
        assert r.status_code == 400 and "cut" in r.json()["error"], r.text


def test_midstream_504(emu):
    emu.fault("midstream504")
    r = emu.chat("a b c d", stream=True)
    assert r.status_code == 200
    *chunks, last = r.text[:-2].split("\n\n")
    assert last == 'data: {"error":{"message":"stream timeout","type":"server_error","code":"504"}}'
    assert sum('"content":"' in c and '"content":""' not in c for c in chunks) == 2
    assert "[DONE]" not in r.text


def test_invalid_sse_line_in_the_middle(emu):
    emu.fault("invalid_sse")
    lines = emu.chat("a b", stream=True).text[:-2].split("\n\n")
    bad = lines.index("data: {this is not json")
    assert 0 < bad < len(lines) - 2 and lines[-1] == "data: [DONE]"


def test_stall_pauses_after_the_first_chunk(emu):
    emu.switches(stall_seconds=0.5)
    emu.fault("stall")
    with emu.http.stream("POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {API_KEY}"},
                         json={"model": "coder-model", "messages": [{"role": "user", "content": "x"}],
                               "stream": True}) as r:
        lines = r.iter_lines()
        assert '"role":"assistant"' in next(lines)
        t0 = time.monotonic()
        rest = [line for line in lines if line]
        assert time.monotonic() - t0 >= 0.45 and rest[-1] == "data: [DONE]"


def test_rate_limits_per_token(emu):
    emu.switches(rpm_limit=2)
    assert [emu.chat().status_code for _ in range(3)] == [200, 200, 429]
    assert emu.chat().json()["error"]["code"] == "Throttling"
    assert emu.chat(token=SEED).status_code == 200  # another token, its own budget
    emu.switches(rpm_limit=0, daily_limit=2)
    r = emu.chat()
    assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota"
    per = emu.admin("GET", "stats")["per_token"]
    assert per == {short(API_KEY): {"requests": 2, "last_minute": 2, "today": 2},
                   short(SEED): {"requests": 1, "last_minute": 1, "today": 1}}


def test_two_keys_that_begin_alike_are_two_accounts(emu):
    """By default each key is an account of its own (docs/emulator.md), also when two keys begin alike: the tests'
    seeded keys are `tok-` and hex, and one pair in 256 shared the name stats gave them, so their limits and bills
    were one account's (each key's prompt cache was its own all along)."""
    one, two = ("tok-ab" + c * 20 for c in "12")
    for key in (one, two):
        emu.admin("POST", "tokens", {"access_token": key, "kind": "key"})
    emu.switches(rpm_limit=1)
    assert [emu.chat(token=t).status_code for t in (one, two)] == [200, 200]  # a budget each
    stats = emu.admin("GET", "stats")
    assert len(stats["per_account"]) == len(stats["billed"]) == len(stats["per_token"]) == 2, stats
    assert not any(key in json.dumps(stats) for key in (one, two))  # never a key in full


def test_arrearage_is_a_400_with_a_request_id(emu):
    emu.fault("arrears400")
    r = emu.chat()
    assert r.status_code == 400 and list(r.json()) == ["error", "request_id"]
    assert r.json()["error"] == {"message": "Access denied, please make sure your account is in good standing. For "
                                 "details, see: https://help.aliyun.com/zh/model-studio/error-code#overdue-payment",
                                 "type": "Arrearage", "param": None, "code": "Arrearage"}


def test_limits_are_an_alibaba_cloud_accounts_summed_over_its_keys(emu):
    """Two keys of one account (`key_accounts`): a Coding Plan's 5-hour requests are counted together, and both
    are refused with its words once they are spent; a key of another account is not."""
    emu.switches(key_accounts={API_KEY: "acme", SEED: "acme"}, plan_limits={"5h": 3})
    assert [emu.chat(token=t).status_code for t in (API_KEY, SEED, API_KEY)] == [200, 200, 200]
    for token in (SEED, API_KEY):
        r = emu.chat(token=token)
        assert r.status_code == 429 and r.json()["error"]["message"] == "hour allocated quota exceeded"
    emu.switches(key_accounts={API_KEY: "acme"})  # SEED: an account of its own again
    assert emu.chat(token=SEED).status_code == 200
    assert emu.admin("GET", "stats")["per_account"]["acme"]["requests"] == 3


@pytest.mark.parametrize("switches,answer", [
    ({"plan_limits": {"week": 1}}, "week allocated quota exceeded"),
    ({"plan_limits": {"month": 1}, "plan_month_day": 31}, "month allocated quota exceeded"),
    ({"tpm_limit": 10}, "You exceeded your current quota, please check your plan and billing details."),
    ({"burst_limit": 1}, "Request rate increased too quickly."),
    ({"rpm_limit": 1}, "Requests throttling triggered."),
])
def test_each_limit_answers_in_model_studios_words(emu, switches, answer):
    emu.switches(**switches)
    assert emu.chat("forty characters of prompt, ten tokens").status_code == 200
    r = emu.chat()
    assert r.status_code == 429 and r.json()["error"]["message"].startswith(answer), r.text


def test_concurrency_limit_counts_requests_in_flight(emu):
    import concurrent.futures

    emu.switches(concurrency_limit=1, first_byte_delay_ms=500)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(emu.chat)
        time.sleep(0.2)
        refused = emu.chat()
        assert slow.result().status_code == 200
    assert refused.status_code == 429 and refused.json()["error"]["message"].startswith(
        "concurrency allocated quota exceeded")
    assert emu.chat().status_code == 200  # nothing in flight any more


def test_cache_hits_per_account(emu):
    marked = {"role": "system", "content": [{"type": "text", "text": "a long system prompt " * 250,
                                             "cache_control": {"type": "ephemeral"}}]}
    body = {"model": "coder-model", "messages": [marked, {"role": "user", "content": "hi"}]}
    for token in (API_KEY, API_KEY, SEED):
        assert emu.http.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {token}"}
                             ).status_code == 200
    per = emu.admin("GET", "stats")["per_account"]
    assert per[short(API_KEY)]["cache_hits"] == 1 and per[short(API_KEY)]["cached_tokens"] > 200
    assert per[short(SEED)] == {"requests": 1, "prompt_tokens": per[short(SEED)]["prompt_tokens"],
                                   "cached_tokens": 0, "cache_hits": 0}  # another key's cache


# ---- admin and the rest -------------------------------------------------------------------------


def test_request_log(emu):
    headers = {"Authorization": f"Bearer {API_KEY}", "User-Agent": "QwenCode/0.14.5 (linux; x64)",
               "X-DashScope-AuthType": "qwen-oauth", "X-DashScope-CacheControl": "enable", "X-Stainless-Lang": "js"}
    body = {"model": "coder-model", "messages": [{"role": "user", "content": "logged"}], "metadata": {"sessionId": "s"},
            "stream": True, "stream_options": {"include_usage": True}}
    emu.http.post("/v1/chat/completions", json=body, headers=headers)
    emu.form("/api/v1/oauth2/token", {"grant_type": "refresh_token", "refresh_token": "x", "client_id": CLIENT_ID})
    chat_req, token_req = emu.admin("GET", "requests")
    assert chat_req["method"] == "POST" and chat_req["path"] == "/v1/chat/completions" and chat_req["body"] == body
    for k, v in headers.items():
        assert chat_req["headers"][k.lower()] == v
    assert chat_req["raw_body_len"] == int(chat_req["headers"]["content-length"]) and chat_req["time"] <= time.time()
    assert token_req["body"] == {"grant_type": "refresh_token", "refresh_token": "x", "client_id": CLIENT_ID}
    assert emu.http.delete("/_emulator/requests").status_code == 200
    assert emu.admin("GET", "requests") == []


def test_switches_reset_and_tokens(emu):
    sw = emu.admin("GET", "switches")
    assert sw["reasoning"] is True and sw["expires_in"] == 3600 and sw["resource_url"] is None
    assert emu.admin("POST", "switches", {"gap_ms": 5})["gap_ms"] == 5
    assert emu.http.post("/_emulator/switches", json={"no_such_switch": 1}).status_code == 400
    added = emu.admin("POST", "tokens", {"access_token": "tok-added", "expires_in": 100})
    assert added["access_token"] == "tok-added" and added["refresh_token"]
    emu.fault("server500")
    emu.admin("POST", "reset")
    assert emu.admin("GET", "switches")["gap_ms"] == 0
    assert emu.chat(token="tok-added").status_code == 200  # no fault left, token kept
    emu.admin("POST", "reset", {"tokens": True})
    assert emu.chat(token="tok-added").status_code == 401
    assert emu.chat(token=SEED).status_code == 200 and emu.chat(token=API_KEY).status_code == 200
    assert emu.admin("GET", "stats")["chat_requests"] == 2  # 401s are not counted
    assert emu.http.post("/_emulator/approve", json={"user_code": "NOPE1234"}).status_code == 404


def test_authorize_page_approves_in_a_browser(emu):
    verifier, challenge = pkce()
    d = device(emu, challenge)
    page = emu.http.get(d["verification_uri_complete"])
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'action="/_emulator/approve"' in page.text and d["user_code"] in page.text
    r = emu.form("/_emulator/approve", {"user_code": d["user_code"]})
    assert r.status_code == 200 and "Approved" in r.text
    assert poll(emu, d["device_code"], verifier).status_code == 200


def test_models_embeddings_web_search(emu):
    auth = {"Authorization": f"Bearer {API_KEY}"}
    for prefix in ("/v1", "/compatible-mode/v1"):
        models = emu.http.get(prefix + "/models", headers=auth).json()
        ids = [m["id"] for m in models["data"]]
        assert models["object"] == "list" and "qwen3-coder-plus" in ids
        assert "coder-model" not in ids  # a key's list: the OAuth portal's own names are not a plan's models
        r = emu.http.post(prefix + "/embeddings", headers=auth, json={"model": "text-embedding-v4",
                                                                      "input": ["a", "b", "a"]})
        e = r.json()
        assert [d["index"] for d in e["data"]] == [0, 1, 2] and len(e["data"][0]["embedding"]) == 1024
        assert e["data"][0]["embedding"] == e["data"][2]["embedding"] != e["data"][1]["embedding"]
        assert e["usage"]["total_tokens"] == e["usage"]["prompt_tokens"] > 0
    assert emu.http.get("/v1/models").status_code == 401
    assert emu.http.post("/v1/embeddings", headers=auth, json={"model": "x", "input": "a"}).status_code == 400
    s = emu.http.post("/api/v1/indices/plugin/web_search", headers=auth, json={"uq": "qwen", "page": 1, "rows": 2})
    assert s.json()["status"] == 0 and len(s.json()["data"]["docs"]) == 2
    assert emu.http.get("/nowhere").status_code == 404


def test_openai_sdk(emu):
    import openai
    client = openai.OpenAI(base_url=emu.url + "/v1", api_key=SEED, max_retries=0,
                           http_client=httpx.Client(trust_env=False, timeout=10))
    c = client.chat.completions.create(model="coder-model", messages=[{"role": "user", "content": "sdk"}])
    assert c.choices[0].message.content == "Echo: sdk" and c.usage.prompt_tokens_details.cached_tokens == 0
    chunks = list(client.chat.completions.create(model="coder-model", messages=[{"role": "user", "content": "a b"}],
                                                 stream=True, stream_options={"include_usage": True}))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "Echo: a b"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    with client.chat.completions.stream(model="coder-model", messages=[{"role": "user", "content": "get_weather"}],
                                        tools=TOOLS) as s:
        final = s.get_final_completion()
    assert final.choices[0].message.tool_calls[0].function.name == "get_weather"
    vec = client.embeddings.create(model="text-embedding-v4", input="sdk").data[0].embedding
    assert len(vec) == 1024  # text-embedding-v4's default size
    emu.fault("quota429")
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="coder-model", messages=[{"role": "user", "content": "q"}])
    assert e.value.code == "insufficient_quota"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=emu.url + "/v1", api_key="wrong", max_retries=0,
                      http_client=httpx.Client(trust_env=False)).models.list()
