"""The Anthropic Messages dialect's translation tables (api/messages/): what is translated, accepted and
ignored, or refused — request, whole answer, stream events, errors, model names."""

from __future__ import annotations

import json

import pytest

from qwen_gateway.api.messages.errors import error_body, error_type, stream_error_type
from qwen_gateway.api.messages.response import chat_to_message
from qwen_gateway.api.messages.stream import MessagesStreamTranslator
from qwen_gateway.api.messages.thinking import ALTERED, FOREIGN, OURS, Signer
from qwen_gateway.errors import GatewayError
from qwen_gateway.models.model_map import ModelMap
from qwen_gateway.seal import Sealer
from qwen_gateway.sse import SSEDecoder


def body(**kw) -> dict:
    return {"model": "claude-sonnet-5-5", "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}], **kw}


# ---- thinking signatures---------------------------------------------------------------------------------


def test_signatures_verify_only_the_thinking_they_were_made_for(tmp_path):
    signer = Signer(lambda: Sealer(tmp_path))
    sig = signer.sign("I think")
    assert signer.verify("I think", sig) == OURS
    assert signer.verify("I think!", sig) == ALTERED and signer.verify("I think", "qgw1.AAAA") == FOREIGN


# ---- the answer -----------------------------------------------------------------------------------------


# ---- the stream -----------------------------------------------------------------------------------------

def chunk(delta: dict | None = None, finish: str | None = None, usage_: dict | None = None) -> dict:
    if usage_ is not None:
        return {"id": "c", "choices": [], "usage": usage_}
    return {"id": "c", "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}]}


def events(translator: MessagesStreamTranslator, chunks: list[dict], end: bool = True) -> list[tuple[str, dict]]:
    raw = b"".join(b"".join(translator.feed(c)) for c in chunks) + (b"".join(translator.finish()) if end else b"")
    decoded = SSEDecoder().feed(raw)
    assert all(e.event == json.loads(e.data)["type"] for e in decoded)  # every event has its event: line
    return [(e.event or "", json.loads(e.data)) for e in decoded]


def test_a_stream_in_anthropics_event_order():
    t = MessagesStreamTranslator(model="claude-sonnet-5-5", sign=lambda text: f"sig({text})")
    evs = events(t, [chunk({"role": "assistant", "reasoning_content": "hmm "}), chunk({"reasoning_content": "ok"}),
                     chunk({"content": "Hel"}), chunk({"content": "lo"}),
                     chunk({"tool_calls": [{"index": 0, "id": "call_9", "type": "function",
                                            "function": {"name": "Bash", "arguments": '{"comm'}}]}),
                     chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'and": "ls"}'}}]}),
                     chunk({}, "tool_calls"), chunk(usage_={"prompt_tokens": 9, "completion_tokens": 4})])
    kinds = [k for k, _ in evs]
    assert kinds == ["message_start", "ping",
                     "content_block_start", "content_block_delta", "content_block_delta", "content_block_delta",
                     "content_block_stop",
                     "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                     "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]
    assert evs[0][1]["message"]["model"] == "claude-sonnet-5-5"
    assert evs[5][1]["delta"] == {"type": "signature_delta", "signature": "sig(hmm ok)"}
    assert evs[11][1]["content_block"] == {"type": "tool_use", "id": "call_9", "name": "Bash", "input": {}}
    arguments = "".join(e["delta"]["partial_json"] for k, e in evs if e.get("delta", {}).get("type") == "input_json_delta")
    assert json.loads(arguments) == {"command": "ls"}
    assert [e["index"] for k, e in evs if k == "content_block_start"] == [0, 1, 2]
    assert evs[-2][1]["delta"]["stop_reason"] == "tool_use" and evs[-2][1]["usage"]["output_tokens"] == 4


def test_an_empty_answer_still_ends_well_formed():
    assert [k for k, _ in events(MessagesStreamTranslator(model="m", sign=str), [])] == [
        "message_start", "ping", "message_delta", "message_stop"]


def test_an_upstream_error_ends_the_stream_with_an_error_event():
    t = MessagesStreamTranslator(model="m", sign=str)
    out = b"".join(t.feed(chunk({"content": "par"}))) + b"".join(
        t.fail({"message": "slow down", "type": "rate_limit_error", "code": "rate_limit_exceeded"}))
    last = SSEDecoder().feed(out)[-1]
    assert last.event == "error" and json.loads(last.data) == {
        "type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}


# ---- errors and model names -----------------------------------------------------------------------------

@pytest.mark.parametrize("status,kind", [(400, "invalid_request_error"), (401, "authentication_error"),
                                         (403, "permission_error"), (404, "not_found_error"),
                                         (413, "request_too_large"), (429, "rate_limit_error"), (500, "api_error"),
                                         (502, "api_error"), (503, "api_error"), (529, "overloaded_error")])
def test_error_types_by_status(status, kind):
    assert error_type(status) == kind
    doc = json.loads(error_body(GatewayError(status, "why"), "req_1"))
    assert doc == {"type": "error", "error": {"type": kind, "message": "why"}, "request_id": "req_1"}


def test_stream_error_types():
    assert stream_error_type({"type": "server_error", "code": "stream_idle_timeout"}) == "api_error"
    assert stream_error_type({"type": "invalid_request_error"}) == "invalid_request_error"


@pytest.mark.parametrize("name,target", [("claude-opus-5-5", "qwen3-coder-plus"), ("claude-sonnet-5-5", "qwen3-coder-plus"),
                                         ("claude-sonnet-4-5-20250929", "qwen3-coder-plus"),
                                         ("claude-haiku-5-5", "qwen3-coder-flash"), ("qwen3-max", "qwen3-max")])
def test_claude_model_names_map_by_tier(name, target):
    assert ModelMap("qwen3-coder-plus").resolve(name) == target


def test_a_tier_can_be_mapped_to_another_model():
    assert ModelMap("qwen3-coder-plus", {"claude-opus": "qwen3-max"}).resolve("claude-opus-5-5") == "qwen3-max"


# ---- the pass-through pair ------------------------------------------------------------------------------

def test_a_plans_anthropic_base():
    from qwen_gateway.upstream.dashscope.plans import anthropic_base
    assert anthropic_base("https://dashscope-intl.aliyuncs.com/compatible-mode/v1") == \
        "https://dashscope-intl.aliyuncs.com/apps/anthropic"
    assert anthropic_base("https://coding-intl.dashscope.aliyuncs.com/v1") == \
        "https://coding-intl.dashscope.aliyuncs.com/apps/anthropic"
    assert anthropic_base("https://example.com/api") is None


def test_a_passed_through_body_is_a_plain_messages_request():
    from qwen_gateway.api.messages.passthrough import own_body
    notes: list[str] = []
    out = own_body(body(system=[{"type": "text", "text": "x-anthropic-billing-header: cc"},
                                {"type": "text", "text": "sys"}],
                        messages=[{"role": "user", "content": "q"}, {"role": "system", "content": "ctx"},
                                  {"role": "assistant", "content": [{"type": "thinking", "thinking": "t",
                                                                     "signature": "ours"},
                                                                    {"type": "text", "text": "a"}]},
                                  {"role": "user", "content": "q2"}],
                        max_tokens=32000, thinking={"type": "adaptive", "display": "omitted"},
                        output_config={"effort": "high"},
                        context_management={"edits": []}, tools=[{"name": "B", "input_schema": {},
                                                                  "defer_loading": True}]), notes)
    assert out["system"] == "sys\n\nctx"
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    assert out["messages"][1]["content"] == [{"type": "text", "text": "a"}]
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 16384}
    assert out["tools"] == []  # a deferred tool stays hidden from the model, as with Anthropic
    assert not {"context_management", "output_config"} & set(out)


def test_a_passed_through_stream_is_relayed_with_the_clients_model_and_the_gateways_signatures():
    from qwen_gateway.api.messages.passthrough import EventRelay, EventTap
    from qwen_gateway.turn.stream_rewriter import StreamRewriter
    upstream = b"".join(
        b"event: %s\ndata: %s\n\n" % (e["type"].encode(), json.dumps(e).encode()) for e in [
            {"type": "message_start", "message": {"model": "qwen3-coder-plus", "usage": {"input_tokens": 5}}},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hm"}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "up"}},
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}},
            {"type": "message_stop"}])
    tap = EventTap()
    rw = StreamRewriter(tap, EventRelay(model="claude-opus-5-5", sign=lambda t: f"ours({t})"))
    evs = [json.loads(e.data) for e in SSEDecoder().feed(rw.run(upstream))]
    assert evs[0]["message"]["model"] == "claude-opus-5-5"
    assert evs[3]["delta"]["signature"] == "ours(hm)" and evs[-1]["type"] == "message_stop"
    assert rw.error is None and tap.usage == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8,
                                              "prompt_tokens_details": {"cached_tokens": 0}}


def test_thinking_the_client_did_not_ask_for_is_left_out():
    from qwen_gateway.api.messages.request import asks_thinking
    answer = {"choices": [{"finish_reason": "stop", "message": {"content": "hi", "reasoning_content": "hm"}}]}
    assert not asks_thinking(body()) and asks_thinking(body(thinking={"type": "adaptive"}))
    m = chat_to_message(answer, model="m", sign=str, thinking=False)
    assert [b["type"] for b in m["content"]] == ["text"]
    t = MessagesStreamTranslator(model="m", sign=str, thinking=False)
    kinds = [e["content_block"]["type"] for k, e in events(t, [chunk({"reasoning_content": "hm"}),
                                                                chunk({"content": "hi"})]) if k == "content_block_start"]
    assert kinds == ["text"]


def test_thinking_the_client_did_not_ask_for_is_left_out_of_a_passed_through_answer():
    from qwen_gateway.api.messages.passthrough import EventRelay, own_answer
    thought = {"type": "thinking", "thinking": "hm", "signature": "up"}
    whole = {"model": "qwen3-235b-a22b-thinking-2507", "content": [thought, {"type": "text", "text": "hi"}], "usage": {}}
    assert own_answer(whole, model="m", sign=str, thinking=False)[0]["content"] == [{"type": "text", "text": "hi"}]
    assert own_answer(whole, model="m", sign=str)[0]["content"][0]["type"] == "thinking"
    relay = EventRelay(model="m", sign=str, thinking=False)
    out = [json.loads(b.split(b"data: ", 1)[1]) for e in [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hm"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "hi"}},
        {"type": "content_block_stop", "index": 1}, {"type": "message_stop"}] for b in relay.feed(e)]
    assert [(e["type"], e.get("index")) for e in out] == [("content_block_start", 0), ("content_block_delta", 0),
                                                          ("content_block_stop", 0), ("message_stop", None)]


def test_an_anthropic_image_stays_on_the_model_its_route_chose():
    """A passed-through request's vision model is its route's (the engine's, tests/unit/turn/test_model_route.py);
    the Anthropic base takes no OpenAI-compatible extra."""
    from qwen_gateway.accounts import Capability
    from qwen_gateway.upstream.dashscope.request import own_body
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}}
    out = own_body({"messages": [{"role": "user", "content": [image]}], "max_tokens": 10}, model="qwen3.6-plus",
                   capability=Capability.CHAT)
    assert out["model"] == "qwen3.6-plus" and "vl_high_resolution_images" not in out


@pytest.mark.parametrize("status", [529, 503])
def test_an_overloaded_upstream_is_anthropics_529(status):
    """An Anthropic base's 529 and Qwen's 503 alike: 529 `overloaded_error` on the Messages API (Claude Code tries
    it three times, not ten over three minutes), 503 `server_error` on OpenAI's (which has no 529)."""
    from qwen_gateway.api.messages.errors import status as anthropic_status
    from qwen_gateway.upstream.dashscope.errors import classify
    err = classify(status, b'{"type":"error","error":{"type":"overloaded_error","message":"busy"}}')
    e = err.to_gateway_error()
    assert (e.status, e.type) == (503, "server_error")
    assert anthropic_status(e) == 529 and error_type(anthropic_status(e)) == "overloaded_error"


@pytest.mark.parametrize(("event_type", "words"), [
    ("overloaded_error", ("overloaded_error", 529)), ("timeout_error", ("timeout_error", 504)),
    ("rate_limit_error", ("rate_limit_error", 429)), ("api_error", ("api_error", 502))])
def test_an_anthropic_bases_error_in_a_passed_through_stream_keeps_its_type(event_type, words):
    """The Anthropic-compatible base's own `event: error` reaches the client as the same type (an overload was a
    rate limit before: Claude Code retries a 529 three times, a 429 ten)."""
    from qwen_gateway.api.messages.errors import status as anthropic_status
    from qwen_gateway.api.messages.passthrough import EventTap
    from qwen_gateway.turn.stream_rewriter import _as_openai_error
    fault = EventTap().fault({"type": event_type, "message": "busy"})
    error = _as_openai_error({"type": event_type, "message": "busy"}, fault)
    assert (stream_error_type(error), anthropic_status(fault.to_gateway_error())) == words
