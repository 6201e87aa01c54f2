"""A Messages body checked against Anthropic's request shape as its SDK types it (`MessageCreateParams`, issue 51
item 2): a field Anthropic does not know, a `metadata` key other than `user_id`, an `output_config.effort` that
is not one of its levels, a `cache_control` that is not `{"type": "ephemeral", "ttl"?}` — each Anthropic's 400
in its pydantic words, naming the field (api/messages/shape.py). And `output_config.effort` alone asks for no thinking (item 3)."""

from __future__ import annotations

import json

import pytest

from qwen_gateway.api.messages import shape
from qwen_gateway.api.messages.request import asks_thinking, to_chat
from qwen_gateway.api.messages.thinking import OURS
from qwen_gateway.errors import GatewayError


def body(**kw) -> dict:
    return {"model": "claude-sonnet-5-5", "max_tokens": 4096, "messages": [{"role": "user", "content": "hi"}], **kw}


def chat(b: dict) -> tuple[dict, list[str]]:
    notes: list[str] = []
    return to_chat(b, notes, lambda t, s: OURS), notes


def refused(b: dict) -> GatewayError:
    with pytest.raises(GatewayError) as e:
        chat(b)
    assert e.value.status == 400 and e.value.type == "invalid_request_error"
    return e.value


def knobs(c: dict) -> dict:
    return {k: c[k] for k in ("enable_thinking", "thinking_budget", "reasoning_effort") if k in c}


@pytest.mark.parametrize("fields, param, message", [
    ({"bogus": 1}, "bogus", "bogus: Extra inputs are not permitted"),
    ({"betas": ["x"]}, "betas", "betas: Extra inputs are not permitted"),  # a header, never a body field
    ({"metadata": {"user_id": "u", "session": "s"}}, "metadata.session",
     "metadata.session: Extra inputs are not permitted"),
    ({"output_config": {"effort": 1.5}}, "output_config.effort",
     "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'"),
    ({"output_config": {"effort": "extreme"}}, "output_config.effort",
     "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'"),
    ({"output_config": {"effort": "low", "speed": "fast"}}, "output_config.speed",
     "output_config.speed: Extra inputs are not permitted"),
    ({"output_config": "high"}, "output_config", "output_config: Input should be a valid dictionary"),
    ({"output_config": {"format": 5}}, "output_config.format", "output_config.format: Input should be a valid "
                                                               "dictionary"),
    ({"cache_control": {"type": 0}}, "cache_control.type", "cache_control.type: Input should be 'ephemeral'"),
    ({"cache_control": {"type": "ephemeral", "ttl": "2h"}}, "cache_control.ttl",
     "cache_control.ttl: Input should be '5m' or '1h'"),
    ({"cache_control": {"type": "ephemeral", "size": 1}}, "cache_control.size",
     "cache_control.size: Extra inputs are not permitted"),
    ({"cache_control": "ephemeral"}, "cache_control", "cache_control: Input should be a valid dictionary"),
    ({"system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": 5}}]},
     "system.0.cache_control.ttl", "system.0.cache_control.ttl: Input should be '5m' or '1h'"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "q", "cache_control": {
        "type": "ephemeral", "extra": True}}]}]}, "messages.0.content.0.cache_control.extra",
     "messages.0.content.0.cache_control.extra: Extra inputs are not permitted"),
])
def test_a_body_anthropic_refuses_is_refused_naming_the_field(fields, param, message):
    e = refused(body(**fields))
    assert (e.param, e.message) == (param, message)


def test_the_sdk_typed_fields_are_known_and_headers_are_not():
    assert {"model", "messages", "max_tokens", "output_config", "cache_control", "context_management",
            "safeguards", "diagnostics"} <= shape.FIELDS
    assert not {"betas", "workspace_id", "user_profile_id", "output_format"} & shape.FIELDS
    assert shape.EFFORTS == ("low", "medium", "high", "xhigh", "max")
    with pytest.raises(GatewayError) as e:
        shape.cache_control({}, "tools.0.cache_control")
    assert e.value.message == "tools.0.cache_control.type: Field required"


def test_what_the_sdk_and_claude_code_send_is_taken():
    user = json.dumps({"device_id": "d" * 64, "account_uuid": "", "session_id": "s-1"})
    c, notes = chat(body(  # Claude Code's main call (docs: /work/shared/docs/claude-code.md §3), every field
        system=[{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.328;"},
                {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "global", "cache_control": {"type": "ephemeral", "scope": "global"}}],
        tools=[{"name": "Bash", "input_schema": {"type": "object"}}], metadata={"user_id": user},
        thinking={"type": "adaptive", "display": "omitted"},
        context_management={"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        safeguards=[{"type": "dangerous_tool_use"}], output_config={"effort": "max"}, stream=True,
        diagnostics={"previous_message_id": None}))
    assert c["prompt_cache_key"] == "s-1" and knobs(c) == {"reasoning_effort": "max"}
    for fields in ({"metadata": {"user_id": None}}, {"metadata": {}}, {"output_config": {"effort": None}},
                   {"cache_control": {"type": "ephemeral", "ttl": "1h"}}, {"speed": "fast"}, {"inference_geo": "us"},
                   {"service_tier": "auto"}, {"container": None}, {"mcp_servers": []}, {"top_k": 5},
                   {"output_config": {"task_budget": {"type": "tokens", "total": 1000}}}):
        chat(body(**fields))


def test_count_tokens_bodies_take_the_same_fields():
    notes: list[str] = []
    to_chat(body(context_management={"edits": []}, output_config={"effort": "low"}), notes, lambda t, s: OURS,
            counting=True)
    with pytest.raises(GatewayError) as e:
        to_chat(body(bogus=1), notes, lambda t, s: OURS, counting=True)
    assert e.value.param == "bogus"


@pytest.mark.parametrize("effort", ["low", "medium", "high", "xhigh", "max"])
def test_an_effort_without_thinking_asks_for_none(effort):
    """Anthropic thinks only when `thinking` asks: an effort alone (a client saving tokens) must not turn Qwen's
    thinking on, paid and hidden."""
    c, notes = chat(body(output_config={"effort": effort}))
    assert knobs(c) == {"enable_thinking": False}
    assert not asks_thinking(body(output_config={"effort": effort}))
    assert any("output_config.effort" in n for n in notes)


@pytest.mark.parametrize("thinking, want", [
    ({"type": "adaptive"}, {"reasoning_effort": "low"}),  # Claude Code: adaptive, at that effort
    ({"type": "adaptive", "display": "omitted"}, {"reasoning_effort": "low"}),
    ({"type": "enabled", "budget_tokens": 2048}, {"enable_thinking": True, "thinking_budget": 2048}),
    ({"type": "disabled"}, {"enable_thinking": False}),
])
def test_an_effort_with_thinking_sets_its_level(thinking, want):
    c, _ = chat(body(thinking=thinking, output_config={"effort": "low"}))
    assert knobs(c) == want
    assert asks_thinking(body(thinking=thinking)) is (thinking["type"] != "disabled")




# ---- the checks themselves ------------------------------------------------------------------------------

def test_only_names_the_first_extra_key_under_its_path():
    with pytest.raises(GatewayError) as e:
        shape.only({"user_id": "u", "a": 1, "b": 2}, ("user_id",), "metadata")
    assert (e.value.param, e.value.message) == ("metadata.a", "metadata.a: Extra inputs are not permitted")
    shape.only({"user_id": "u"}, ("user_id",), "metadata")  # known keys only: taken


@pytest.mark.parametrize("allowed, words", [(("a",), "'a'"), (("a", "b"), "'a' or 'b'"),
                                            (("a", "b", "c"), "'a', 'b' or 'c'")])
def test_literals_are_listed_as_pydantic_lists_them(allowed, words):
    with pytest.raises(GatewayError) as e:
        shape.literal("z", allowed, "f")
    assert e.value.message == f"f: Input should be {words}"


def test_a_literal_of_another_type_is_refused():
    with pytest.raises(GatewayError):
        shape.literal(1, ("1",), "f")


def test_metadata_absent_is_empty_and_a_user_id_is_a_string_or_null():
    assert shape.metadata(None) == {}
    assert shape.metadata({"user_id": None}) == {"user_id": None}
    with pytest.raises(GatewayError) as e:
        shape.metadata({"user_id": 7})
    assert e.value.param == "metadata.user_id"


def test_output_config_absent_is_empty_and_its_parts_are_kept():
    assert shape.output_config(None) == {}
    config = {"effort": "xhigh", "format": {"type": "json_schema"}, "task_budget": {"total": 5}}
    assert shape.output_config(config) == config


def test_a_cache_control_needs_its_type():
    with pytest.raises(GatewayError) as e:
        shape.cache_control({"ttl": "5m"}, "tools.0.cache_control")
    assert (e.value.param, e.value.message) == ("tools.0.cache_control.type", "tools.0.cache_control.type: Field required")


def test_claude_codes_global_scope_is_taken():
    marker = {"type": "ephemeral", "scope": "global"}
    assert shape.cache_control(marker, "system.0.cache_control") == marker


def test_bad_is_anthropics_400():
    e = shape.bad("x: wrong", "x")
    assert (e.status, e.type, e.code, e.param) == (400, "invalid_request_error", "invalid_request_error", "x")
