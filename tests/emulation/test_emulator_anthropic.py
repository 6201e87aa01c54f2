"""The emulator's Anthropic-compatible base (`{url}/apps/anthropic`, Model Studio's for key accounts), over HTTP
with httpx and, when `.tools/anthropic-venv` exists, with the official anthropic SDK."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import httpx
import pytest

from emulation.test_emulator import API_KEY, SEED, emulator_fixtures

pytestmark = pytest.mark.e2e  # starts emulator processes

ROOT = Path(__file__).resolve().parents[2]
SDK_PYTHON = ROOT / ".tools" / "anthropic-venv" / "bin" / "python"
HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
BETA = "claude-code-20250219,interleaved-thinking-2025-05-14"
BASE = {"model": "qwen3-coder-plus", "max_tokens": 1024, "messages": [{"role": "user", "content": "hello there"}]}
WEATHER = {"name": "get_weather", "description": "Weather", "input_schema": {
    "type": "object", "properties": {"location": {"type": "string"}}}}
THINK = {"type": "enabled", "budget_tokens": 1024}
IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}


proc, emu = emulator_fixtures("--quiet", "--api-key", API_KEY, "--seed-token", SEED)


def post(emu, body=None, path="/v1/messages?beta=true", headers=HEADERS, **fields) -> httpx.Response:
    return emu.http.post("/apps/anthropic" + path, json={**(body or BASE), **fields}, headers=headers)


def ok(r: httpx.Response) -> dict:
    assert r.status_code == 200, r.text
    assert r.headers["request-id"].startswith("req_")
    return r.json()


def refused(r: httpx.Response, status: int = 400) -> str:
    assert r.status_code == status, r.text
    assert r.headers["request-id"].startswith("req_")
    body = r.json()
    assert set(body) == {"type", "error"} and body["type"] == "error" and set(body["error"]) == {"type", "message"}
    return body["error"]["type"] + ": " + body["error"]["message"]


def events(r: httpx.Response) -> list[tuple[str, dict]]:
    """The SSE events as (event, data); every event has an `event:` line naming its data's type."""
    assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream", r.text
    assert r.headers["request-id"].startswith("req_") and r.text.endswith("\n\n")
    out = []
    for chunk in r.text[:-2].split("\n\n"):
        name, data = chunk.split("\n")
        assert name.startswith("event: ") and data.startswith("data: "), chunk
        out.append((name[7:], json.loads(data[6:])))
        assert out[-1][1]["type"] == out[-1][0]
    return out


def texts(evs, kind="text_delta", key="text") -> str:
    return "".join(d["delta"][key] for n, d in evs if n == "content_block_delta" and d["delta"]["type"] == kind)


# ---- answers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages?beta=true"])
def test_a_text_message(emu, path):
    m = ok(post(emu, path=path))
    assert m["id"].startswith("msg_") and m["type"] == "message" and m["role"] == "assistant"
    assert m["model"] == "qwen3-coder-plus" and m["content"] == [{"type": "text", "text": "Echo: hello there"}]
    assert m["stop_reason"] == "end_turn" and m["stop_sequence"] is None
    assert m["usage"] == {"input_tokens": 3, "output_tokens": 5, "cache_creation_input_tokens": 0,
                          "cache_read_input_tokens": 0}


def test_a_stream_in_anthropics_order(emu):
    evs = events(post(emu, stream=True))
    assert [n for n, _ in evs] == ["message_start", "ping", "content_block_start", "content_block_delta",
                                   "content_block_delta", "content_block_delta", "content_block_stop",
                                   "message_delta", "message_stop"]
    start = evs[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["input_tokens"] == 3
    assert evs[2][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert texts(evs) == "Echo: hello there"
    assert evs[-2][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert evs[-2][1]["usage"]["output_tokens"] == 5


def test_thinking_blocks_with_a_signature(emu):
    m = ok(post(emu, thinking=THINK, max_tokens=2048, model="qwen-plus"))
    thinking, text = m["content"]
    assert thinking["type"] == "thinking" and thinking["thinking"] and thinking["signature"]
    assert text == {"type": "text", "text": "Echo: hello there"}
    evs = events(post(emu, thinking=THINK, max_tokens=2048, stream=True, model="qwen-plus"))
    assert evs[2][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert texts(evs, "thinking_delta", "thinking") == thinking["thinking"]
    assert texts(evs, "signature_delta", "signature") == thinking["signature"]
    assert evs[-2][1]["delta"]["stop_reason"] == "end_turn" and texts(evs) == "Echo: hello there"
    # The assistant turn sent back as it came: accepted.
    history = [BASE["messages"][0], {"role": "assistant", "content": m["content"]}, {"role": "user", "content": "ok"}]
    assert ok(post(emu, thinking=THINK, max_tokens=2048, messages=history, model="qwen-plus"))["content"][1][
        "text"] == "Echo: ok"


def test_thinking_by_default_follows_the_model_and_the_reasoning_switch(emu):
    kinds = lambda **kw: [b["type"] for b in ok(post(emu, **kw))["content"]]  # noqa: E731
    assert kinds(model="coder-model") == ["thinking", "text"]  # thinks by default
    assert kinds(model="coder-model", thinking={"type": "disabled"}) == ["text"]
    assert kinds(model="qwen-plus") == ["text"]  # does not think by default
    assert kinds(thinking=THINK, max_tokens=2048) == ["text"]  # qwen3-coder-plus has no thinking at all
    emu.switches(reasoning=False)
    assert kinds(model="coder-model") == ["text"]
    assert kinds(thinking=THINK, max_tokens=2048, model="qwen-plus") == ["thinking", "text"]


def test_a_tool_use_turn_and_its_result(emu):
    m = ok(post(emu, tools=[WEATHER]))  # "hello there" asks for no tool: an answer in words (tools.py)
    assert m["stop_reason"] == "end_turn" and m["content"][-1] == {"type": "text", "text": "Echo: hello there"}
    emu.switches(tool_calls="always")
    m = ok(post(emu, tools=[WEATHER]))
    assert m["stop_reason"] == "tool_use" and len(m["content"]) == 1
    use = m["content"][0]
    assert use["type"] == "tool_use" and use["id"].startswith("toolu_") and use["name"] == "get_weather"
    assert use["input"] == {"location": "Paris"}
    evs = events(post(emu, tools=[WEATHER], stream=True))
    assert evs[2][1]["content_block"] == {"type": "tool_use", "id": evs[2][1]["content_block"]["id"],
                                          "name": "get_weather", "input": {}}
    assert json.loads(texts(evs, "input_json_delta", "partial_json")) == {"location": "Paris"}
    assert evs[-2][1]["delta"]["stop_reason"] == "tool_use"
    history = [BASE["messages"][0], {"role": "assistant", "content": [use]}, {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": use["id"], "content": "sunny", "is_error": False}]}]
    m = ok(post(emu, tools=[WEATHER], messages=history))
    assert m["content"] == [{"type": "text", "text": "Tool said: sunny"}] and m["stop_reason"] == "end_turn"
    assert ok(post(emu, tools=[WEATHER], tool_choice={"type": "none"}))["content"][0]["text"] == "Echo: hello there"
    emu.switches(tool_arguments={"city": "Oslo"})
    forced = ok(post(emu, tools=[WEATHER, {**WEATHER, "name": "other"}], tool_choice={"type": "tool", "name": "other"}))
    assert forced["content"][0]["name"] == "other" and forced["content"][0]["input"] == {"city": "Oslo"}


def test_stop_sequences_and_finish_reason_switches(emu):
    emu.switches(reply="Hello STOP world")
    m = ok(post(emu, stop_sequences=["world", "STOP"]))
    assert m["content"][0]["text"] == "Hello " and m["stop_reason"] == "stop_sequence" and m["stop_sequence"] == "STOP"
    emu.switches(finish_reason="length", deltas=["哈哈", "哈哈", "，好的"])
    evs = events(post(emu, stream=True))
    assert [d["delta"]["text"] for n, d in evs if n == "content_block_delta"] == ["哈哈", "哈哈", "，好的"]
    assert evs[-2][1]["delta"]["stop_reason"] == "max_tokens"


def test_prompt_cache_reads_and_creations(emu):
    system = [{"type": "text", "text": "You are terse. " * 300, "cache_control": {"type": "ephemeral"}}]  # ≥ 1,024 tokens
    first = ok(post(emu, system=system))["usage"]
    assert first["cache_creation_input_tokens"] > 0 and first["cache_read_input_tokens"] == 0
    second = ok(post(emu, system=system))["usage"]
    assert second["cache_read_input_tokens"] == first["cache_creation_input_tokens"]
    assert second["cache_creation_input_tokens"] == 0 and second["input_tokens"] == first["input_tokens"]


# ---- auth, version, routes ---------------------------------------------------------------------


def test_keys_in_x_api_key_or_bearer_oauth_tokens_refused(emu):
    ok(post(emu, headers={"Authorization": f"Bearer {API_KEY}", "anthropic-version": "2023-06-01"}))
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        assert refused(post(emu, path=path, headers={"x-api-key": SEED, "anthropic-version": "2023-06-01"}),
                       401) == "authentication_error: invalid x-api-key"  # an OAuth token: keys only
        assert refused(post(emu, path=path, headers={"anthropic-version": "2023-06-01"}),
                       401) == "authentication_error: x-api-key header is required"
    assert refused(emu.http.get("/apps/anthropic/v1/models", headers={"x-api-key": "nope",
                                                                      "anthropic-version": "1"}), 401)


def test_anthropic_version_is_required(emu):
    assert refused(post(emu, headers={"x-api-key": API_KEY})) == ("invalid_request_error: anthropic-version: header "
                                                                  "is required")


def test_models_count_tokens_and_unknown_routes(emu):
    listing = ok(emu.http.get("/apps/anthropic/v1/models", headers=HEADERS))
    ids = [m["id"] for m in listing["data"]]  # the catalogue's chat models, in its order
    assert listing["has_more"] is False and (listing["first_id"], listing["last_id"]) == (ids[0], ids[-1])
    assert "coder-model" in ids and "text-embedding-v4" not in ids
    assert {"type": "model", "id": "qwen3-coder-plus", "display_name": "qwen3-coder-plus",
            "created_at": "2025-01-01T00:00:00Z"} in listing["data"]
    thinker = "qwen3-235b-a22b-thinking-2507"
    assert ok(emu.http.get(f"/apps/anthropic/v1/models/{thinker}", headers=HEADERS))["id"] == thinker
    assert refused(emu.http.get("/apps/anthropic/v1/models/claude-opus-4", headers=HEADERS), 404)
    body = {k: v for k, v in BASE.items() if k != "max_tokens"} | {"system": "be brief"}
    n = ok(post(emu, body, path="/v1/messages/count_tokens?beta=true"))["input_tokens"]
    assert n == ok(post(emu, {**body, "max_tokens": 64}))["usage"]["input_tokens"] == 5
    assert refused(post(emu, body, path="/v1/messages/count_tokens", max_tokens=5)) == (
        "invalid_request_error: max_tokens: Extra inputs are not permitted")
    assert refused(post(emu, body, path="/v1/messages/count_tokens", model="claude-x"), 404)
    assert refused(emu.http.post("/apps/anthropic/v1/complete", headers=HEADERS), 404).startswith("not_found_error")
    r = emu.http.get("/apps/anthropic/v1/messages", headers=HEADERS)
    assert refused(r, 405) and r.headers["allow"] == "POST"


# ---- faults, limits, request log ---------------------------------------------------------------


@pytest.mark.parametrize("kind,status,expected", [
    ("quota429", 429, "rate_limit_error: Free allocated quota exceeded."),
    ("throttle429", 429, "rate_limit_error: Requests throttling triggered."),
    ("arrears403", 403, "permission_error: Access denied, please make sure your account is in good standing."),
    ("server500", 500, "api_error: Internal server error"),
    ("server503", 529, "overloaded_error: Service unavailable"),
    ("auth401", 401, "authentication_error: invalid x-api-key"),
])
def test_queued_faults_in_anthropics_shape(emu, kind, status, expected):
    emu.fault(kind, retry_after=3, path="/apps/anthropic")
    r = post(emu, stream=True)
    assert refused(r, status) == expected and r.headers["retry-after"] == "3"
    ok(post(emu))  # used up


def test_rate_limits_answer_429(emu):
    emu.switches(rpm_limit=1)
    ok(post(emu))
    assert refused(post(emu), 429) == "rate_limit_error: Requests throttling triggered."


@pytest.mark.parametrize("kind,error", [("midstream504", {"type": "api_error", "message": "stream timeout"}),
                                        ("error_finish", {"type": "overloaded_error", "message":
                                                          "Requests rate limit exceeded, please try again later."})])
def test_stream_errors_as_error_events(emu, kind, error):
    emu.fault(kind)
    evs = events(post(emu, stream=True))
    assert evs[-1] == ("error", {"type": "error", "error": error}) and evs[0][0] == "message_start"
    assert "message_stop" not in [n for n, _ in evs]


def test_stream_faults_on_the_socket(emu):
    emu.fault("invalid_sse")
    r = post(emu, stream=True)
    assert "event: content_block_delta\ndata: {this is not json\n\n" in r.text and r.text.endswith("message_stop\"}\n\n")
    emu.fault("reset_midstream")
    with pytest.raises(httpx.HTTPError):
        post(emu, stream=True).read()
    emu.switches(split_writes=True, gap_ms=1)
    assert texts(events(post(emu, stream=True))) == "Echo: hello there"


def test_the_request_log_keeps_api_headers_and_hides_the_key(emu):
    emu.admin("DELETE", "requests")
    ok(post(emu, headers={**HEADERS, "anthropic-beta": BETA}))
    events(post(emu, headers={"Authorization": f"Bearer {API_KEY}", "anthropic-version": "2023-06-01"}, stream=True))
    logged = emu.admin("GET", "requests")
    assert [e["path"] for e in logged] == ["/apps/anthropic/v1/messages?beta=true"] * 2
    first, second = (e["headers"] for e in logged)
    assert first["anthropic-version"] == "2023-06-01" and first["anthropic-beta"] == BETA
    assert first["x-api-key"] == second["authorization"] == "<redacted>" and "anthropic-beta" not in second
    assert {e["key_sha256"] for e in logged} == {hashlib.sha256(API_KEY.encode()).hexdigest()[:16]}
    assert logged[0]["body"] == BASE and logged[1]["body"]["stream"] is True
    stats = emu.admin("GET", "stats")
    assert stats["messages_requests"] == 2 and stats["chat_requests"] == 0
    # The OpenAI-compatible routes still log their Authorization header as sent.
    emu.chat()
    assert emu.admin("GET", "requests")[-1]["headers"]["authorization"] == f"Bearer {API_KEY}"


# ---- the official SDK --------------------------------------------------------------------------

SDK_SCRIPT = """
import json, sys, anthropic
c = anthropic.Anthropic(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
out = {}
m = c.messages.create(model="qwen3-coder-plus", max_tokens=256, messages=[{"role": "user", "content": "sdk"}])
out["text"] = m.content[0].text
with c.messages.stream(model="coder-model", max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024},
                       messages=[{"role": "user", "content": "streamed"}]) as s:
    out["streamed"] = "".join(s.text_stream)
    final = s.get_final_message()
out["kinds"] = [b.type for b in final.content]
out["signature"] = bool(final.content[0].signature)
out["count"] = c.messages.count_tokens(model="qwen3-coder-plus", messages=[{"role": "user", "content": "sdk"}]).input_tokens
out["models"] = len(list(c.models.list()))
try:
    c.messages.create(model="claude-sonnet-4-5", max_tokens=16, messages=[{"role": "user", "content": "x"}])
except anthropic.NotFoundError as e:
    out["not_found"] = [e.status_code, e.body["error"]["type"], e.response.headers["request-id"][:4]]
print(json.dumps(out))
"""


def test_the_official_anthropic_sdk(emu):
    if not SDK_PYTHON.exists():
        pytest.skip("no .tools/anthropic-venv (scripts/install-test-tools.sh installs the anthropic SDK there)")
    run = subprocess.run([str(SDK_PYTHON), "-c", SDK_SCRIPT, emu.url + "/apps/anthropic", API_KEY],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    models = len(ok(emu.http.get("/apps/anthropic/v1/models", headers=HEADERS))["data"])
    assert out == {"text": "Echo: sdk", "streamed": "Echo: streamed", "kinds": ["thinking", "text"],
                   "signature": True, "count": 1, "models": models, "not_found": [404, "not_found_error", "req_"]}
    logged = emu.admin("GET", "requests")
    assert len(logged) == 6 and all(r["headers"]["anthropic-version"] for r in logged)  # the SDK's own version
