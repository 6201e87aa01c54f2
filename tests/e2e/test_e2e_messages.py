"""The `anthropic` Python SDK (PyPI `anthropic`, in .tools/anthropic-venv: it cannot share .venv with mitmproxy
12.2) against a real reverse-mode gateway: `Anthropic(base_url=<gateway>)` with its key from
ANTHROPIC_API_KEY, no retries, strict response validation (tests/clients/anthropic_python.py).

Every test runs twice: with the Messages API translated to Qwen's chat API (the default), and passed through
to the key account's Anthropic-compatible base (`qwen_messages_passthrough`; the emulator serves one at
/apps/anthropic, docs/emulator.md). Each checks what the SDK got (whole messages, the stream's accumulator,
tool input built from `input_json_delta`, thinking signatures that come back and are accepted, images, token
counts, the model list, one exception class per error status), that every answer carried a `request-id`,
and that nothing went anywhere but the gateway: the SDK sent every request to it, and mitmproxy opened no
upstream connection but the gateway's own relay (the engine alone talks to Qwen, here the emulator)."""

from __future__ import annotations

import json
import os
import re

import pytest

from helpers.home import CODING_PLAN, Home
from helpers.procs import ROOT, Gateway
from helpers.team import anthropic_driver

PYTHON = ROOT / ".tools" / "anthropic-venv" / "bin" / "python"
SCRIPT = ROOT / "tests" / "clients" / "anthropic_python.py"
CLIENT_KEY = "sk-ant-client-key-never-forwarded"
MODEL = "claude-sonnet-4-6"
PARAMS = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "x"}]}
_DROPPED = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not PYTHON.exists(), reason=(
    "anthropic SDK not installed (scripts/install-test-tools.sh installs it into .tools/anthropic-venv)"))]


@pytest.fixture(scope="module", params=["translate", "passthrough"])
def msg_gw(request, emulator, tmp_path_factory) -> Gateway:
    """A gateway whose only account is a key on the emulator; `passthrough` sends Messages requests to the
    account's Anthropic-compatible base instead of translating them."""
    home = Home(tmp_path_factory.mktemp(f"messages-{request.param}"), emulator)
    home.key("emu", path=CODING_PLAN, default_model="qwen3-coder-plus")
    args = ("--set", "qwen_messages_passthrough=true") if request.param == "passthrough" else ()
    gw = Gateway(home.root / "gw", args=args, env=home.env(), connlog=True).start()
    gw.passthrough = request.param == "passthrough"
    yield gw
    gw.stop()


def sdk(gw: Gateway, scenario: str, args: dict | None = None, **auth: str) -> dict:
    """One run of the driver; every request it sent went to the gateway and was answered with a request-id."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_") and k.upper() not in _DROPPED}
    env.update(HOME=str(gw.workdir), ANTHROPIC_BASE_URL=gw.url, **(auth or {"ANTHROPIC_API_KEY": CLIENT_KEY}))
    mark = len(gw.connections())
    r = anthropic_driver([scenario, json.dumps(args or {})], env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:] + gw.log()[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["http"] and all(h["url"].startswith(gw.url + "/") for h in out["http"]), out["http"]
    assert all(re.fullmatch(r"req_\w+", h["request_id"] or "") for h in out["http"]), out["http"]
    assert set(gw.connections()[mark:]) <= {"relay"}  # mitmproxy reached nothing but the gateway's relay
    assert "invalid" not in out, f"the SDK refused the gateway's answer: {out['invalid']}"
    return out


def result(out: dict) -> dict:
    assert "error" not in out, out["error"]
    return out["result"]


def upstream(emu) -> list[dict]:
    """The model requests Qwen (the emulator) received: chat completions, or Messages when passed through."""
    return [r for r in emu.requests() if r["path"].split("?")[0].endswith(("/chat/completions", "/v1/messages"))]


def texts(message: dict) -> str:
    return "".join(b["text"] for b in message["content"] if b["type"] == "text")


DELTA_BLOCK = {"text_delta": "text", "input_json_delta": "tool_use", "thinking_delta": "thinking",
               "signature_delta": "thinking"}
RAW = ("message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta",
       "message_stop")


def assert_anthropic_order(events: list[str]) -> None:
    """Anthropic's stream order: message_start; blocks one at a time (start, deltas of the block's own kind,
    a thinking block's one signature_delta last, stop); message_delta; message_stop."""
    raw = [e for e in events if e.split(":")[0] in RAW]
    assert raw[0] == "message_start" and raw[-2:] == ["message_delta", "message_stop"], raw
    block, signed = None, False
    for e in raw[1:-2]:
        kind, _, sub = e.partition(":")
        if kind == "content_block_start":
            assert block is None, raw
            block, signed = sub, False
        elif kind == "content_block_delta":
            assert block == DELTA_BLOCK[sub] and not signed, raw
            signed = sub == "signature_delta"
        elif kind == "content_block_stop":
            assert block is not None and (block != "thinking" or signed), raw
            block = None
        else:
            raise AssertionError(f"{e} inside the content: {raw}")
    assert block is None, raw


def test_text_message(msg_gw, emu):
    out = sdk(msg_gw, "text", {"text": "hello"})
    m = result(out)
    assert texts(m) == "Echo: hello"
    assert m["type"] == "message" and m["role"] == "assistant" and m["id"].startswith("msg_")
    assert m["model"] == MODEL and m["stop_reason"] == "end_turn" and m["stop_sequence"] is None
    assert m["usage"]["input_tokens"] + m["usage"]["cache_read_input_tokens"] > 0 and m["usage"]["output_tokens"] > 0
    assert m["request_id"] == out["http"][0]["request_id"]
    assert len(upstream(emu)) == 1 and CLIENT_KEY not in json.dumps(emu.requests())


def test_no_thinking_block_unless_asked(msg_gw, emu):
    """Anthropic answers with thinking blocks only when the request enables thinking: a program that reads
    `message.content[0].text` must keep working whatever the Qwen model does by default."""
    m = result(sdk(msg_gw, "text", {"text": "hello"}))
    assert [b["type"] for b in m["content"]] == ["text"], m["content"]


def test_stream_accumulates_strictly(msg_gw, emu):
    s = result(sdk(msg_gw, "stream", {"text": "streamed hello"}))
    assert_anthropic_order(s["events"])
    assert s["text"] == texts(s["message"]) == "Echo: streamed hello"  # deltas == get_final_message()
    assert s["message"]["stop_reason"] == "end_turn" and s["message"]["usage"]["output_tokens"] > 0
    assert re.fullmatch(r"req_\w+", s["stream_request_id"] or "")
    assert len(upstream(emu)) == 1 and upstream(emu)[0]["body"]["stream"] is True


def test_tool_use_round_trip(msg_gw, emu):
    emu.switches(tool_calls="always")  # a call of the offered tool, whatever the prompt (docs/emulator.md)
    out = result(sdk(msg_gw, "tools"))
    first, second = out["first"], out["second"]
    assert_anthropic_order(first["events"])
    assert_anthropic_order(second["events"])
    use = next(b for b in first["message"]["content"] if b["type"] == "tool_use")
    assert use["name"] == "get_weather" and use["id"]
    assert json.loads("".join(first["partial_json"])) == use["input"] == {"location": "Paris"}  # streamed input
    assert len(first["partial_json"]) >= 1 and first["message"]["stop_reason"] == "tool_use"
    assert texts(second["message"]) == "Tool said: sunny-in-Paris"  # the tool_result reached Qwen
    sent = json.dumps(upstream(emu)[1]["body"]["messages"])
    assert "sunny-in-Paris" in sent


def test_thinking_signature_round_trip(msg_gw, emu):
    out = result(sdk(msg_gw, "thinking", {"model": "qwen-plus"}))  # the account's qwen3-coder-plus never thinks
    first = out["first"]
    thinking = [b for b in first["content"] if b["type"] == "thinking"]
    assert thinking and thinking[0]["thinking"] and thinking[0]["signature"], first["content"]
    assert first["content"][-1]["type"] == "text"
    assert texts(out["second"]) == "Echo: Again."  # the block came back unchanged and was accepted
    streamed = out["streamed"]
    assert_anthropic_order(streamed["events"])
    block = next(b for b in streamed["message"]["content"] if b["type"] == "thinking")
    assert block["signature"] and block["thinking"] == streamed["thinking"] and streamed["signature_events"] == 1
    assert texts(out["after_stream"]) == "Echo: And again."  # the streamed block is accepted as well
    forged = out["forged"]
    assert forged and forged["class"] == "BadRequestError" and forged["type"] == "invalid_request_error", forged
    assert "signature" in forged["message"]
    # a block signed elsewhere (another gateway, Anthropic: a session resumed here) is left out, the turn goes on
    assert texts(out["elsewhere"]) == "Echo: Signed elsewhere."
    sent = upstream(emu)
    assert len(sent) == 5  # the edited turn never reached Qwen
    assert "Thinking about it." not in json.dumps(sent[-1]["body"]["messages"][:-1])


def test_stop_sequences_are_reported_whole_and_streamed(msg_gw, emu):
    """Qwen ends before a stop sequence without saying so: the gateway applies them itself and answers as
    Anthropic does, `stop_reason: "stop_sequence"` and the sequence matched."""
    emu.switches(reply="Hello END world STOP", reasoning=False)
    params = {**PARAMS, "stop_sequences": ["STOP", "END"]}
    whole, streamed, unmatched = result(sdk(msg_gw, "calls", {"calls": [
        {"op": "create", "params": params}, {"op": "stream", "params": params},
        {"op": "create", "params": {**PARAMS, "stop_sequences": ["nowhere"]}}]}))
    m = whole["answer"]
    assert (texts(m), m["stop_reason"], m["stop_sequence"]) == ("Hello ", "stop_sequence", "END")
    s = streamed["answer"]
    assert_anthropic_order(s["events"])
    assert s["text"] == texts(s["message"]) == "Hello "
    assert (s["message"]["stop_reason"], s["message"]["stop_sequence"]) == ("stop_sequence", "END")
    m = unmatched["answer"]
    assert (texts(m), m["stop_reason"], m["stop_sequence"]) == ("Hello END world STOP", "end_turn", None)


def test_message_start_carries_the_prompts_tokens(msg_gw, emu):
    """Clients that record input tokens from `message_start` (the first event) get a count, not 0."""
    long = "a few words of a prompt " * 200
    for _ in range(2):  # the first request also loads the counting encoding
        s = result(sdk(msg_gw, "stream", {"text": long}))
    start = s["start_usage"]  # passed through: the base's count, the implicit cache's part apart (Anthropic's way)
    assert start["input_tokens"] + start["cache_read_input_tokens"] > 500, start
    final = s["message"]["usage"]  # Qwen's own count at the end (the second prompt came from its cache)
    assert final["input_tokens"] + final["cache_read_input_tokens"] > 500, final


BAD = [({"tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
         "tool_choice": {"type": "tool", "name": "missing"}}, "tool_choice.name"),
       ({"tool_choice": {"type": "any"}}, "tool_choice"),
       ({"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]}, "text"),
       ({"temperature": 5}, "temperature"), ({"top_p": 2}, "top_p"), ({"top_k": -5}, "top_k")]


def test_bodies_that_break_anthropics_schema_are_refused_as_anthropic_refuses_them(msg_gw, emu):
    # as the body's own fields (this SDK's create() has no temperature, top_p or top_k parameters)
    outcomes = result(sdk(msg_gw, "calls", {"calls": [{"op": "create", "params": {**PARAMS, "extra_body": fields}}
                                                       for fields, _ in BAD]}))
    for (fields, named), o in zip(BAD, outcomes):
        raised = o.get("raised") or {}
        assert (raised.get("status"), raised.get("class"), raised.get("type")) == (
            400, "BadRequestError", "invalid_request_error"), (fields, o)
        assert named in raised["message"], raised["message"]
    assert upstream(emu) == []  # refused before anything went to Qwen


def test_base64_image(msg_gw, emu):
    m = result(sdk(msg_gw, "image"))
    assert texts(m) == "Echo: What colour is this?"
    (sent,) = upstream(emu)
    assert "iVBORw0KGgo" in json.dumps(sent["body"]["messages"])  # the PNG itself went to a model that sees


def test_count_tokens(msg_gw, emu):
    out = result(sdk(msg_gw, "count_tokens"))
    assert 0 < out["short"] < out["long"]
    assert upstream(emu) == []  # the gateway's own estimate


def test_models_list(msg_gw, emu):
    out = result(sdk(msg_gw, "models", {"retrieve": "claude-sonnet"}))
    assert out["types"] == ["model"] and {"claude-sonnet", "claude-opus", "claude-haiku"} <= set(out["ids"])
    assert out["first_id"] == out["ids"][0] and out["last_id"] == out["ids"][-1] and out["has_more"] is False
    assert out["paged_ids"] == out["ids"]  # models.list(limit=5) pages through all of them, once, and ends
    assert out["retrieved"]["id"] == "claude-sonnet" and out["retrieved"]["type"] == "model"


def test_errors_raise_the_sdk_exception_of_their_status(msg_gw, emu):
    """Queued emulator faults, one per request in order; local refusals; an error in the middle of a stream.
    The gateway keeps serving afterwards."""
    for kind in ("context400", "arrears403", "server500", "server503", "timeout504", "midstream504"):
        # a translated stream is continued twice, and breaks each time; a pass-through one is not continued
        emu.fault(kind, count=3 if kind == "midstream504" and not msg_gw.passthrough else 1)
    calls = [{"op": "create", "params": {**PARAMS, "max_tokens": 0}},  # refused by the gateway itself
             *[{"op": "create", "params": PARAMS}] * 5, {"op": "stream", "params": PARAMS},
             {"op": "get", "path": "/v1/no-such-endpoint"}, {"op": "retrieve", "model": "no-such-model"},
             {"op": "create", "params": PARAMS}]
    outcomes = result(sdk(msg_gw, "calls", {"calls": calls}))
    got = [(o["raised"]["status"], o["raised"]["class"], o["raised"]["type"]) if "raised" in o else "answered"
           for o in outcomes]
    # Anthropic's words: an overloaded upstream (Qwen's 503, the Anthropic base's own) is 529, a 504 timeout_error
    want = [(400, "BadRequestError", "invalid_request_error"), (400, "BadRequestError", "invalid_request_error"),
            (403, "PermissionDeniedError", "permission_error"), (500, "InternalServerError", "api_error"),
            (529, "OverloadedError", "overloaded_error"), (504, "GatewayTimeoutError", "timeout_error"),
            # the stream's error event: Qwen's timeout (its code 504), or the Anthropic base's own words passed on
            (200, "APIStatusError", "api_error" if msg_gw.passthrough else "timeout_error"),
            (404, "NotFoundError", "not_found_error"), (404, "NotFoundError", "not_found_error"), "answered"]
    assert got == want, [(g, (o.get("raised") or {}).get("message")) for g, o in zip(got, outcomes)]
    assert "stream timeout" in outcomes[6]["raised"]["message"]
    assert all(re.fullmatch(r"req_\w+", o["raised"]["request_id"] or "") for o in outcomes[:-1])


def test_rate_limit_is_rate_limit_error_with_retry_after(msg_gw, emu):
    emu.fault("ratequota429", count=3, retry_after=0)
    out = sdk(msg_gw, "calls", {"calls": [{"op": "create", "params": PARAMS}]})
    (raised,) = [o["raised"] for o in result(out)]
    assert (raised["status"], raised["class"], raised["type"]) == (429, "RateLimitError", "rate_limit_error")
    assert raised["retry_after"] is not None
    emu.reset()
    assert texts(result(sdk(msg_gw, "text", {"text": "after"}))) == "Echo: after"


def test_client_keys_are_checked_and_never_forwarded(make_gateway, emu, key_home):
    """With client keys, a wrong one is an AuthenticationError; the right one is accepted as `x-api-key`
    (ANTHROPIC_API_KEY) and as a bearer token (ANTHROPIC_AUTH_TOKEN), and reaches nobody."""
    gw = make_gateway("keys", env={**key_home, "QWEN_GATEWAY_KEYS": CLIENT_KEY}, connlog=True)
    out = sdk(gw, "text", ANTHROPIC_API_KEY="sk-ant-wrong-key")
    assert (out["error"]["status"], out["error"]["class"], out["error"]["type"]) == (
        401, "AuthenticationError", "authentication_error"), out["error"]
    assert upstream(emu) == []
    assert texts(result(sdk(gw, "text", {"text": "key"}, ANTHROPIC_API_KEY=CLIENT_KEY))) == "Echo: key"
    assert texts(result(sdk(gw, "text", {"text": "bearer"}, ANTHROPIC_AUTH_TOKEN=CLIENT_KEY))) == "Echo: bearer"
    assert len(upstream(emu)) == 2 and CLIENT_KEY not in json.dumps(emu.requests())
