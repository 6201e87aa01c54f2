"""Chat messages out of Responses content (api/responses/chat_messages.py): content parts as text and images,
tool outputs, shell outputs, and the messages put together as OpenAI's chat format needs them."""

from __future__ import annotations

import pytest

from qwen_gateway.api.responses.chat_messages import ChatMessages, message_content, shell_output_text, tool_output
from qwen_gateway.errors import GatewayError

IMG = "data:image/png;base64,iVBORw0KGgo="


def test_text_parts_of_every_kind_join_into_one_string():
    content = [{"type": "input_text", "text": "a"}, {"type": "output_text", "text": "b"},
               {"type": "refusal", "refusal": "c"}, {"type": "summary_text", "text": "d"}]
    assert message_content(content, "input[0]", []) == "abcd"


def test_an_image_makes_the_content_parts():
    parts = message_content([{"type": "input_text", "text": "see"},
                             {"type": "input_image", "image_url": IMG, "detail": "low"}], "input[0]", [])
    assert parts == [{"type": "text", "text": "see"},
                     {"type": "image_url", "image_url": {"url": IMG, "detail": "low"}}]


def test_an_image_url_object_and_an_unknown_detail_read_as_auto():
    (part,) = message_content([{"type": "image", "image_url": {"url": IMG}, "detail": "huge"}], "input[0]", [])
    assert part == {"type": "image_url", "image_url": {"url": IMG, "detail": "auto"}}


def test_a_cache_breakpoint_keeps_the_parts_and_stays_on_its_part():
    mark = {"type": "ephemeral"}
    parts = message_content([{"type": "input_text", "text": "a", "prompt_cache_breakpoint": mark}], "input[0]", [])
    assert parts == [{"type": "text", "text": "a", "prompt_cache_breakpoint": mark}]


def test_files_and_audio_are_dropped_with_one_note_each_kind():
    notes: list[str] = []
    text = message_content([{"type": "input_file", "file_id": "f"}, {"type": "input_file", "file_id": "g"},
                            {"type": "input_audio"}, {"type": "input_text", "text": "x"}], "input[0]", notes)
    assert text == "x"
    assert notes == ["input_file content parts dropped (Qwen reads text and images only)",
                     "input_audio content parts dropped (Qwen reads text and images only)"]


@pytest.mark.parametrize("content, param, code", [
    (5, "input[0].content", "invalid_type"),
    (["x"], "input[0].content[0]", "invalid_type"),
    ([{"type": "video"}], "input[0].content[0].type", "unsupported_value"),
    ([{"type": "input_image", "file_id": "file_1"}], "input[0].content[0].image_url", "unsupported_value"),
])
def test_content_qwen_cannot_read_is_refused_naming_the_part(content, param, code):
    with pytest.raises(GatewayError) as e:
        message_content(content, "input[0]", [])
    assert (e.value.status, e.value.param, e.value.code) == (400, param, code)


def test_a_tool_output_of_parts_is_its_text_and_its_images():
    text, images = tool_output([{"type": "input_text", "text": "one"}, {"type": "input_image", "image_url": IMG},
                                {"type": "input_text", "text": "two"}], "input[3]", [])
    assert text == "one\ntwo" and images == [{"type": "image_url", "image_url": {"url": IMG, "detail": "auto"}}]


@pytest.mark.parametrize("output, text", [("plain", "plain"), (None, ""), ({"ok": True}, '{"ok": true}')])
def test_a_tool_output_of_another_kind_is_text(output, text):
    assert tool_output(output, "input[0]", []) == (text, [])


def test_shell_output_is_stdout_stderr_and_outcome():
    out = [{"stdout": "a.txt\n", "stderr": "", "outcome": {"type": "exit", "exit_code": 0}},
           {"stdout": "", "stderr": "denied", "outcome": {"type": "timeout"}}, "junk"]
    assert shell_output_text(out) == "a.txt\n\n[exit 0]\n[stderr]\ndenied\n[timeout]"
    assert shell_output_text("as text") == "as text" and shell_output_text(None) == ""


# ---- ChatMessages ------------------------------------------------------------------------------------------

def test_consecutive_calls_are_one_assistant_message():
    conv = ChatMessages()
    conv.call("a", "f", "{}")
    conv.call("b", "g", "{}")
    assert len(conv.messages) == 1 and [c["id"] for c in conv.messages[0]["tool_calls"]] == ["a", "b"]
    assert conv.has_call("a") and conv.has_call("b") and not conv.has_call("c")


def test_a_call_after_an_assistant_text_joins_it_only_when_the_text_is_empty():
    conv = ChatMessages()
    conv.add({"role": "assistant", "content": "let me look"})
    conv.call("a", "f", "{}")
    assert [m.get("tool_calls") is not None for m in conv.messages] == [False, True]
    empty = ChatMessages()
    empty.add({"role": "assistant", "content": ""})
    empty.call("a", "f", "{}")
    assert len(empty.messages) == 1 and empty.messages[0]["tool_calls"][0]["id"] == "a"


def test_images_a_tool_returned_follow_the_tool_messages_in_a_user_message():
    conv = ChatMessages()
    conv.call("a", "f", "{}")
    conv.call("b", "f", "{}")
    image = {"type": "image_url", "image_url": {"url": IMG}}
    conv.tool("a", "", [image])
    conv.tool("b", "done", [])
    conv.add({"role": "user", "content": "next"})
    assert [m["role"] for m in conv.messages] == ["assistant", "tool", "tool", "user", "user"]
    assert conv.messages[1]["content"] == "(the tool returned the image below)"
    assert conv.messages[3]["content"] == [{"type": "text", "text": "The tool call above returned this image:"},
                                           image]


def test_reasoning_goes_on_the_next_assistant_message_once():
    conv = ChatMessages()
    conv.reasoning = "why"
    conv.call("a", "f", "{}")
    conv.add({"role": "assistant", "content": "done"})
    assert conv.messages[0]["reasoning_content"] == "why" and "reasoning_content" not in conv.messages[1]


def test_adopted_messages_make_their_calls_answerable():
    conv = ChatMessages()
    conv.adopt([{"role": "assistant", "tool_calls": [{"id": "old_1"}]}])
    assert conv.has_call("old_1") and len(conv.messages) == 1
