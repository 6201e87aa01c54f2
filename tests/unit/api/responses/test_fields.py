"""Request fields the gateway honours in its own way or refuses (api/responses/fields.py): a 400 naming what it
cannot honour, allowed_tools and max_tool_calls applied to the chat request."""

from __future__ import annotations

import pytest

from qwen_gateway.api.responses import fields
from qwen_gateway.api.responses.request import translate
from qwen_gateway.errors import GatewayError
from unit.api.responses.test_fidelity import BODY, names, refused  # the tools' fixtures


@pytest.mark.parametrize("field, value", [("conversation", "conv_123"), ("conversation", {"id": "conv_123"}),
                                          ("prompt", {"id": "pmpt_1", "version": "2"}), ("top_logprobs", 5)])
def test_fields_the_gateway_cannot_honour_are_refused_by_name(field, value):
    e = refused({**BODY, field: value})
    assert (e.status, e.code, e.param, e.type) == (400, "unsupported_value", field, "invalid_request_error")


def test_logprobs_asked_through_include_are_refused():
    e = refused({**BODY, "include": ["reasoning.encrypted_content", "message.output_text.logprobs"]})
    assert (e.code, e.param) == ("unsupported_value", "include")


@pytest.mark.parametrize("field, value", [("conversation", None), ("prompt", None), ("top_logprobs", 0),
                                          ("top_logprobs", None)])
def test_null_or_neutral_values_are_accepted(field, value):
    assert translate({**BODY, field: value}).chat["messages"]


def test_allowed_tools_offers_only_the_listed_tools_with_its_mode():
    choice = {"type": "allowed_tools", "mode": "required", "tools": [
        {"type": "function", "name": "beta"}, {"type": "function", "name": "sleep", "namespace": "clock"},
        {"type": "image_generation"}]}
    notes: list[str] = []
    chat = translate({**BODY, "tool_choice": choice}, notes=notes).chat
    assert names(chat) == ["beta", "clock__sleep"] and chat["tool_choice"] == "required"
    assert any("allowed_tools" in n for n in notes)
    auto = translate({**BODY, "tool_choice": {**choice, "mode": "auto", "tools": [{"type": "namespace",
                                                                                    "name": "clock"}]}}).chat
    assert names(auto) == ["clock__sleep"] and auto["tool_choice"] == "auto"


def test_allowed_tools_that_name_nothing_callable():
    choice = {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "nope"}]}
    chat = translate({**BODY, "tool_choice": choice}).chat
    assert "tools" not in chat and "tool_choice" not in chat
    e = refused({**BODY, "tool_choice": {**choice, "mode": "required"}})
    assert (e.status, e.param) == (400, "tool_choice.tools")
    e = refused({**BODY, "tool_choice": {**choice, "mode": "sometimes"}})
    assert (e.status, e.param) == (400, "tool_choice.mode")


def test_max_tool_calls_shapes_the_request():
    assert translate({**BODY, "max_tool_calls": 0}).chat["tool_choice"] == "none"
    assert translate({**BODY, "max_tool_calls": 1}).chat["parallel_tool_calls"] is False
    assert "parallel_tool_calls" not in translate({**BODY, "max_tool_calls": 3}).chat
    for bad, code in ((-1, "invalid_value"), ("2", "invalid_type"), (True, "invalid_type")):
        e = refused({**BODY, "max_tool_calls": bad})
        assert (e.status, e.param, e.code) == (400, "max_tool_calls", code)


# ---- the functions themselves ------------------------------------------------------------------------------

def chat_with(*qnames: str) -> dict:
    return {"tools": [{"type": "function", "function": {"name": n}} for n in qnames], "parallel_tool_calls": True}


def test_the_first_field_that_cannot_be_honoured_is_named():
    with pytest.raises(GatewayError) as e:
        fields.refuse_unhonoured({"prompt": {"id": "p"}, "conversation": "c"})
    assert e.value.param == "conversation" and "previous_response_id" in e.value.message


@pytest.mark.parametrize("top", [True, 1.0, "0"])
def test_top_logprobs_must_be_the_integer_zero(top):
    with pytest.raises(GatewayError) as e:
        fields.refuse_unhonoured({"top_logprobs": top})
    assert e.value.param == "top_logprobs"


def test_max_tool_calls_absent_is_no_limit():
    assert fields.max_tool_calls({}) is None and fields.max_tool_calls({"max_tool_calls": 0}) == 0


@pytest.mark.parametrize("cap, kept", [(3, 3), (0, 0), (None, None), (-1, None), (True, None), ("2", None)])
def test_cap_calls_keeps_only_a_valid_cap(cap, kept):
    assert fields.cap_calls({"max_tool_calls": cap}) == kept


def test_allowed_tools_keeps_the_listed_and_says_how_many_in_a_note():
    chat, notes = chat_with("alpha", "beta", "clock__sleep", "tool_search"), []
    body = {"tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [
        {"type": "custom", "name": "alpha"}, {"type": "tool_search"}, "junk"]}}
    fields.limit_tools(chat, body, notes)
    assert names(chat) == ["alpha", "tool_search"] and chat["tool_choice"] == "auto"
    assert notes == ["allowed_tools: 2 of 4 tools offered"]


def test_allowed_tools_naming_none_takes_the_tools_away():
    chat = chat_with("alpha")
    fields.limit_tools(chat, {"tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": []}}, [])
    assert chat == {}  # no tools: no tool_choice nor parallel_tool_calls for Qwen to refuse


def test_allowed_tools_needs_a_list():
    with pytest.raises(GatewayError) as e:
        fields.limit_tools(chat_with("a"), {"tool_choice": {"type": "allowed_tools", "mode": "auto"}}, [])
    assert (e.value.param, e.value.code) == ("tool_choice.tools", "invalid_type")


def test_max_tool_calls_changes_nothing_without_tools():
    chat: dict = {}
    fields.limit_tools(chat, {"max_tool_calls": 0}, [])
    assert chat == {}
