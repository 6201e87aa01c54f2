"""More of DashScope's rules for the chat body (upstream/dashscope/params.py): whole answers from stream-only
models, sampling ranges, images in tool messages; each change noted for the client."""

from __future__ import annotations

import pytest

from qwen_gateway.upstream.dashscope.params import sampling_ranges, stream_whole, tool_images

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


def test_a_stream_only_model_asked_for_a_whole_answer_is_asked_a_stream_with_usage():
    notes: list[str] = []
    body = {"model": "qwen3-next-80b-a3b-thinking", "messages": []}
    assert stream_whole(body, notes) == {"model": "qwen3-next-80b-a3b-thinking", "messages": [], "stream": True,
                                         "stream_options": {"include_usage": True}}
    assert notes == ["streamed from Qwen and assembled into one answer: qwen3-next-80b-a3b-thinking answers "
                     "streams only"]
    assert body == {"model": "qwen3-next-80b-a3b-thinking", "messages": []}  # the client's body is left alone


def test_streams_and_other_models_are_left_as_they_are():
    for body in ({"model": "qwen3-next-80b-a3b-thinking", "stream": True}, {"model": "qwen-plus"}):
        assert stream_whole(body) is body
    assert stream_whole({"model": "new-model"}, learned={"new-model"})["stream"] is True  # taught by a 400


@pytest.mark.parametrize("asked,sent,note", [
    ({"temperature": 2}, {"temperature": 1.99}, "temperature 2 sent as 1.99 (Qwen's range is [0, 2))"),
    ({"temperature": -1}, {"temperature": 0.0}, "temperature -1 sent as 0 (Qwen's range is [0, 2))"),
    ({"top_p": 0}, {"top_p": 0.0001}, "top_p 0 sent as 0.0001 (Qwen's range is (0, 1])"),
    ({"top_p": 1.5}, {"top_p": 1.0}, "top_p 1.5 sent as 1 (Qwen's range is (0, 1])"),
])
def test_sampling_outside_qwens_ranges_is_clamped_and_noted(asked, sent, note):
    notes: list[str] = []
    assert sampling_ranges({"model": "m", **asked}, notes) == {"model": "m", **sent} and notes == [note]


def test_sampling_within_range_or_not_a_number_is_left_alone():
    for body in ({"temperature": 0, "top_p": 1}, {"temperature": 1.99, "top_p": 0.5}, {"temperature": True},
                 {"temperature": None, "top_p": "0"}):
        notes: list[str] = []
        assert sampling_ranges(body, notes) is body and notes == []


def test_images_a_tool_returned_follow_the_run_of_tool_messages():
    notes: list[str] = []
    messages = [{"role": "assistant", "tool_calls": []},
                {"role": "tool", "tool_call_id": "a", "content": [{"type": "text", "text": "shot 1"}, IMAGE]},
                {"role": "tool", "tool_call_id": "b", "content": [IMAGE, IMAGE]},
                {"role": "user", "content": "what do you see?"}]
    assert tool_images(messages, notes) == [
        {"role": "assistant", "tool_calls": []},
        {"role": "tool", "tool_call_id": "a", "content": "shot 1"},
        {"role": "tool", "tool_call_id": "b", "content": "(the tool returned the image below)"},
        {"role": "user", "content": [{"type": "text", "text": "The tool call above returned these 3 images:"},
                                     IMAGE, IMAGE, IMAGE]},
        {"role": "user", "content": "what do you see?"}]
    assert notes == ["images in tool messages sent in a user message after them (Qwen reads tool results as text)"]


def test_an_image_in_the_last_tool_message_still_gets_its_user_message():
    out = tool_images([{"role": "tool", "tool_call_id": "a", "content": [IMAGE]}])
    assert out[-1] == {"role": "user", "content": [{"type": "text", "text": "The tool call above returned this "
                                                                            "image:"}, IMAGE]}


def test_tool_messages_without_images_are_left_alone():
    messages = [{"role": "tool", "tool_call_id": "a", "content": [{"type": "text", "text": "ok"}]}]
    assert tool_images(messages) is messages
