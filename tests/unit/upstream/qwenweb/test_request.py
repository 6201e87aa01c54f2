"""The Qwen Chat web request (upstream/qwenweb/request.py): the history flattened into one message with the tools
described, the model the web app has, thinking as the client asks, what it cannot do refused or noted."""

from __future__ import annotations

import pytest

from qwen_gateway.errors import GatewayError
from qwen_gateway.upstream.qwenweb import request

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


def test_a_lone_user_message_is_sent_as_it_is():
    notes: list[str] = []
    body = request.completion_body({"messages": [{"role": "user", "content": "hi"}]}, model="qwen3.7-max",
                                   notes=notes, now=1790000000)
    node, = body["messages"]
    assert node["content"] == "hi" and node["role"] == "user" and body["model"] == "qwen3.7-max"
    assert body["stream"] is True and body["incremental_output"] is True and body["chat_id"] is None
    assert body["feature_config"]["output_schema"] == "phase" and body["timestamp"] == 1790000000
    assert notes == []


def test_a_model_the_web_app_lacks_goes_to_its_best_model_with_a_note():
    notes: list[str] = []
    body = request.completion_body({"messages": [{"role": "user", "content": "hi"}]}, model="coder-model", notes=notes)
    assert body["model"] == "qwen3.8-max" and "coder-model" in notes[0]  # the static list's best (catalogue.rank)


def test_history_is_flattened_system_first_tool_calls_and_results_as_text():
    chat = {"messages": [{"role": "system", "content": "Be terse."},
                         {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
                         {"role": "assistant", "content": None, "tool_calls": [
                             {"id": "call_1", "type": "function",
                              "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
                         {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}],
            "tools": TOOLS}
    text = request.flatten(chat)
    assert text.startswith("Be terse.\n\n# Tools")
    assert 'User: weather?' in text
    assert 'Assistant: <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>' in text
    assert "Tool result (call_1): sunny" in text and text.endswith("answer the last message.")


def test_thinking_follows_the_client():
    def thinking(**chat) -> bool:
        body = request.completion_body({"messages": [{"role": "user", "content": "x"}], **chat}, model="m", notes=[])
        return body["feature_config"]["thinking_enabled"]
    assert thinking() is True and thinking(enable_thinking=False) is False and thinking(reasoning_effort="none") is False


def test_an_image_is_a_clear_400():
    chat = {"messages": [{"role": "user", "content": [{"type": "text", "text": "what?"},
                                                      {"type": "image_url", "image_url": {"url": "data:,"}}]}]}
    with pytest.raises(GatewayError) as e:
        request.completion_body(chat, model="m", notes=[])
    assert e.value.status == 400 and e.value.param == "messages[0].content" and e.value.code == "unsupported_value"


def test_knobs_the_web_app_lacks_are_dropped_with_a_note_and_n_and_logprobs_refused():
    notes: list[str] = []
    request.completion_body({"messages": [{"role": "user", "content": "x"}], "temperature": 0.2, "max_tokens": 9},
                            model="qwen3.7-plus", notes=notes)
    assert [n.split(":")[0] for n in notes] == ["temperature", "max_tokens"]
    for field, value in (("n", 2), ("logprobs", True)):
        with pytest.raises(GatewayError) as e:
            request.completion_body({"messages": [{"role": "user", "content": "x"}], field: value}, model="m", notes=[])
        assert (e.value.status, e.value.param, e.value.code) == (400, field, "unsupported_value")
    with pytest.raises(GatewayError) as e:
        request.completion_body({"messages": [{"role": "user", "content": "x"}], "web_search_options": {}},
                                model="m", notes=[])
    assert e.value.param == "web_search_options"
    notes = []
    request.completion_body({"messages": [{"role": "user", "content": "x"}],
                             "web_search_options": {"optional": True, "param": "tools"}}, model="m", notes=notes)
    assert any("search tool was dropped" in n for n in notes)


def test_a_new_chat_is_made_for_the_model_at_millisecond_time():
    assert request.new_chat_body("qwen3.7-max", now=1790000000.5) == {
        "title": "New Chat", "models": ["qwen3.7-max"], "chat_mode": "normal", "chat_type": "t2t",
        "timestamp": 1790000000500, "project_id": ""}


def test_the_body_names_its_chat_once_it_exists_and_a_later_turn_its_parent():
    body = request.completion_body({"messages": [{"role": "user", "content": "one"}]}, model="qwen3.7-max", notes=[])
    named = request.with_chat(body, "c1")
    assert (named["chat_id"], named["chatId"], body["chat_id"]) == ("c1", "c1", None)
    later = request.continued(body, "c1", "r9", "two")
    node, = later["messages"]
    assert (later["parent_id"], later["parentId"], node["parentId"], node["content"]) == ("r9", "r9", "r9", "two")
    assert body["messages"][0]["content"] == "one"  # the first turn's body is left as it was


def test_a_pinned_turns_new_messages_as_one_user_message():
    assert request.follow_up_text([{"role": "user", "content": "two"}], 3) == "two"
    assert request.follow_up_text([{"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                                   {"role": "user", "content": "and tomorrow?"}], 3) == \
        "Tool result (call_1): sunny\n\nUser: and tomorrow?"


def test_a_message_over_what_qwen_chat_takes_is_refused_before_anything_is_sent():
    def body(chars: int) -> dict:
        return request.completion_body({"messages": [{"role": "user", "content": "x" * chars}]}, model="m", notes=[])

    request.check_size(body(request.MAX_MESSAGE_CHARS))
    with pytest.raises(GatewayError) as e:
        request.check_size(body(request.MAX_MESSAGE_CHARS + 1))
    assert (e.value.status, e.value.code) == (400, "context_length_exceeded")
    assert "50,001 characters" in e.value.message
    # characters JSON writes six bytes for: few characters, but a body over the bytes Qwen Chat takes
    with pytest.raises(GatewayError):
        request.check_size(body(0) | {"messages": [{"content": "\x1f" * 30_000}]})
