"""Anthropic content blocks -> chat messages (api/messages/content.py): text, images, documents, tool
results and the assistant's tool calls and thinking, directly and through the request's translation."""

from __future__ import annotations

import json

import pytest

from qwen_gateway.api.messages import content
from qwen_gateway.api.messages.thinking import FOREIGN, OURS
from qwen_gateway.errors import GatewayError
from unit.api.messages.test_request import body, chat, refused  # the request's helpers


def test_content_blocks_become_chat_parts():
    c, _ = chat(body(messages=[{"role": "user", "content": [
        {"type": "text", "text": "look"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}, "title": "T"}]}]))
    parts = c["messages"][0]["content"]
    assert parts == [{"type": "text", "text": "look"},
                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                     {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                     {"type": "text", "text": "T\n\nnotes"}]


def test_a_pdf_document_is_refused_with_a_clear_message():
    e = refused(body(messages=[{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}}]}]))
    assert "application/pdf" in e.message and e.param == "messages.0.content.0.source"


def test_a_tool_round_trip_becomes_tool_calls_and_tool_messages():
    c, _ = chat(body(messages=[
        {"role": "user", "content": "list files"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me look."},
            {"type": "thinking", "thinking": "ls will do", "signature": "ok"},
            {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt\nb.md", "is_error": False,
             "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "and now?"}]}]))
    assistant, tool, user = c["messages"][1:]
    assert assistant == {"role": "assistant", "content": "Let me look.", "reasoning_content": "ls will do",
                         "tool_calls": [{"id": "toolu_1", "type": "function",
                                         "function": {"name": "Bash", "arguments": '{"command": "ls"}'}}]}
    assert tool == {"role": "tool", "tool_call_id": "toolu_1", "content": [  # the client's cache marker kept
        {"type": "text", "text": "a.txt\nb.md", "cache_control": {"type": "ephemeral"}}]}
    assert user == {"role": "user", "content": "and now?"}


def test_tool_results_with_errors_and_images():
    c, _ = chat(body(messages=[{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": "Exit code 3", "is_error": True},
        {"type": "tool_result", "tool_use_id": "t2", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}}]}]}]))
    first, second, images = c["messages"]
    assert first["content"] == "Error: Exit code 3"
    assert second == {"role": "tool", "tool_call_id": "t2", "content": "(the tool returned the image below)"}
    assert images["role"] == "user" and images["content"][1]["image_url"]["url"] == "data:image/png;base64,AAA"


def test_a_thinking_block_whose_signature_does_not_match_is_refused():
    e = refused(body(messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "t", "signature": "edited"}]}]))
    assert "signature" in e.message


# ---- the block functions themselves ---------------------------------------------------------------------

PNG = {"type": "base64", "media_type": "image/png", "data": "iVBOR"}


def verdict(v: str):
    return lambda thinking, signature: v


def test_a_block_without_cache_control_is_left_as_it_is():
    part = {"type": "text", "text": "x"}
    assert content.marked(part, {"type": "text"}, "m.0") is part


def test_a_cache_control_keeps_its_type_and_ttl_only():
    # `scope` is Claude Code's (accepted by shape.py) but Qwen's cache reads type and ttl
    block = {"cache_control": {"type": "ephemeral", "ttl": "1h", "scope": "global"}}
    assert content.marked({"type": "text", "text": "x"}, block, "m.0") == {
        "type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "1h"}}


def test_a_cache_control_anthropic_refuses_is_refused_where_it_is():
    with pytest.raises(GatewayError) as e:
        content.marked({}, {"cache_control": {"type": "persistent"}}, "messages.0.content.1")
    assert (e.value.status, e.value.param) == (400, "messages.0.content.1.cache_control.type")


@pytest.mark.parametrize("source, param", [
    (None, "m.source"),
    ({"type": "base64", "media_type": "image/bmp", "data": "Qk0"}, "m.source"),
    ({"type": "base64", "media_type": "image/png", "data": ""}, "m.source"),
    ({"type": "file", "file_id": "file_1"}, "m.source.type"),
    ({"type": "url"}, "m.source.type"),
])
def test_an_image_qwen_cannot_be_given_is_refused_naming_the_field(source, param):
    with pytest.raises(GatewayError) as e:
        content.image_part({"type": "image", **({"source": source} if source else {})}, "m")
    assert (e.value.status, e.value.param, e.value.type) == (400, param, "invalid_request_error")


def test_a_base64_image_becomes_a_data_url():
    assert content.image_part({"source": {**PNG, "media_type": "image/webp"}}, "m") == {
        "type": "image_url", "image_url": {"url": "data:image/webp;base64,iVBOR"}}


def test_a_content_document_is_its_text_blocks_a_blank_line_apart_under_its_title():
    block = {"type": "document", "title": "Notes", "source": {"type": "content", "content": [
        {"type": "text", "text": "one"}, {"type": "image", "source": PNG}, {"type": "text", "text": "two"}]}}
    assert content.document_text(block, "m") == "Notes\n\none\n\ntwo"


def test_a_document_that_is_no_text_is_refused_naming_its_media_type():
    block = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}}
    with pytest.raises(GatewayError) as e:
        content.document_text(block, "m")
    assert e.value.param == "m.source" and "application/pdf" in e.value.message


def test_tool_results_come_before_the_users_own_text():
    # OpenAI's chat format: tool messages right after the assistant's calls, whatever the block order
    out = content.user_messages([{"type": "text", "text": "thanks"},
                                 {"type": "tool_result", "tool_use_id": "t1", "content": "done"}], "m.1", [])
    assert out == [{"role": "tool", "tool_call_id": "t1", "content": "done"}, {"role": "user", "content": "thanks"}]


def test_an_error_result_without_content_says_error():
    out = content.user_messages([{"type": "tool_result", "tool_use_id": "t1", "is_error": True}], "m.1", [])
    assert out == [{"role": "tool", "tool_call_id": "t1", "content": "Error."}]


def test_images_of_several_tool_results_follow_them_in_one_user_message():
    out = content.user_messages([
        {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "image", "source": PNG}]},
        {"type": "tool_result", "tool_use_id": "t2", "content": [{"type": "image", "source": PNG}]}], "m.1", [])
    assert [m["role"] for m in out] == ["tool", "tool", "user"]
    assert out[2]["content"][0] == {"type": "text", "text": "The tool call above returned these 2 images:"}
    assert len(out[2]["content"]) == 3


def test_a_marker_inside_a_tool_results_content_marks_the_result():
    out = content.user_messages([{"type": "tool_result", "tool_use_id": "t1", "content": [
        {"type": "text", "text": "ok", "cache_control": {"type": "ephemeral"}}]}], "m.1", [])
    assert out == [{"role": "tool", "tool_call_id": "t1",
                    "content": [{"type": "text", "text": "ok", "cache_control": {"type": "ephemeral"}}]}]


@pytest.mark.parametrize("block, param", [
    ({"type": "tool_result"}, "m.1.content.0.tool_use_id"),
    ({"type": "tool_result", "tool_use_id": "t", "content": [{"type": "tool_use"}]}, "m.1.content.0.content.0.type"),
    ({"type": "thinking", "thinking": "t", "signature": "s"}, "m.1.content.0.type"),
    ({"type": "text", "text": None}, "m.1.content.0.text"),
    ({"text": "no type"}, "m.1.content.0"),
])
def test_a_user_block_anthropic_refuses_is_refused_naming_it(block, param):
    with pytest.raises(GatewayError) as e:
        content.user_messages([block], "m.1", [])
    assert (e.value.status, e.value.param) == (400, param)


def test_an_assistant_turn_of_calls_only_has_no_content():
    msg = content.assistant_message([{"type": "tool_use", "id": "c1", "name": "Read", "input": {"path": "ä"}}],
                                    "m.1", [], verdict(OURS))
    assert msg == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "Read", "arguments": '{"path": "ä"}'}}]}


def test_thinking_signed_elsewhere_is_dropped_with_a_note():
    notes: list[str] = []
    msg = content.assistant_message([{"type": "thinking", "thinking": "hmm", "signature": "x"},
                                     {"type": "redacted_thinking", "data": "…"},
                                     {"type": "text", "text": "hi"}], "m.1", notes, verdict(FOREIGN))
    assert msg == {"role": "assistant", "content": "hi"}
    assert len(notes) == 2 and "signed elsewhere" in notes[0] and "redacted_thinking" in notes[1]


def test_a_marker_on_a_tool_use_moves_to_the_turns_last_text():
    # Qwen marks content parts, and a tool call is none
    msg = content.assistant_message([{"type": "text", "text": "a"}, {"type": "text", "text": "b"},
                                     {"type": "tool_use", "id": "c1", "name": "X", "input": {},
                                      "cache_control": {"type": "ephemeral"}}], "m.1", [], verdict(OURS))
    assert msg["content"] == [{"type": "text", "text": "a"},
                              {"cache_control": {"type": "ephemeral"}, "type": "text", "text": "b"}]


def test_a_marker_on_a_turn_without_text_is_left_out_with_a_note():
    notes: list[str] = []
    msg = content.assistant_message([{"type": "tool_use", "id": "c1", "name": "X", "input": {},
                                      "cache_control": {"type": "ephemeral"}}], "m.1", notes, verdict(OURS))
    assert msg["content"] is None and "cache_control" not in json.dumps(msg)
    assert any("cache_control on an assistant turn" in n for n in notes)


@pytest.mark.parametrize("block, param", [
    ({"type": "tool_use", "id": "c1", "name": "X", "input": "ls"}, "m.1.content.0.input"),
    ({"type": "tool_use", "name": "X", "input": {}}, "m.1.content.0"),
    ({"type": "thinking", "thinking": "t"}, "m.1.content.0"),
    ({"type": "image", "source": PNG}, "m.1.content.0.type"),
])
def test_an_assistant_block_anthropic_refuses_is_refused_naming_it(block, param):
    with pytest.raises(GatewayError) as e:
        content.assistant_message([block], "m.1", [], verdict(OURS))
    assert (e.value.status, e.value.param) == (400, param)
