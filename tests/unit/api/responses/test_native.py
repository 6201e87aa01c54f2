"""The Responses request as Model Studio's own Responses API takes it (api/responses/native.py): built from the
translation, continued there by its own previous_response_id only on the account that holds the conversation,
and None (translated) for what only the translation serves."""

from __future__ import annotations

import pytest

from qwen_gateway.api.responses import native
from qwen_gateway.api.responses.request import translate

TOOLS = [{"type": "function", "name": "shell", "description": "run", "parameters": {"type": "object"}}]


def chat_of(body: dict, history: list | None = None):
    t = translate(body, history)
    return t.chat, t.history_messages


def test_a_first_turn_sends_the_whole_conversation_with_instructions_tools_and_store():
    body = {"model": "qwen3-coder-plus", "instructions": "be brief", "tools": TOOLS, "stream": True,
            "input": [{"type": "message", "role": "developer", "content": "repo rules"},
                      {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
            "max_output_tokens": 500, "temperature": 0.5, "reasoning": {"effort": "low"}}
    chat, held = chat_of(body)
    out = native.own_body(chat, body, previous=None, history_messages=held)
    assert out["instructions"] == "be brief" and "previous_response_id" not in out
    assert out["input"] == [{"type": "message", "role": "system", "content": "repo rules"},
                            {"type": "message", "role": "user", "content": "hi"}]  # one text: a string
    assert out["tools"] == [{"type": "function", "name": "shell", "description": "run",
                             "parameters": {"type": "object"}}]
    assert (out["stream"], out["store"], out["max_output_tokens"], out["temperature"]) == (True, True, 500, 0.5)
    assert out["reasoning"] == {"effort": "low"}


def test_calls_and_their_outputs_become_function_items():
    body = {"model": "qwen3-coder-plus", "tools": TOOLS, "input": [
        {"type": "message", "role": "user", "content": "ls"},
        {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": "{\"cmd\":\"ls\"}"},
        {"type": "function_call_output", "call_id": "c1", "output": "a.py"}]}
    chat, held = chat_of(body)
    out = native.own_body(chat, body, previous=None, history_messages=held)
    assert out["input"][1:] == [{"type": "function_call", "call_id": "c1", "name": "shell",
                                 "arguments": "{\"cmd\":\"ls\"}"},
                                {"type": "function_call_output", "call_id": "c1", "output": "a.py"}]


def test_a_continuation_sends_only_its_new_items_with_qwens_own_id():
    history = [{"type": "message", "role": "user", "content": "one"},
               {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "1"}]}]
    body = {"model": "qwen3-coder-plus", "instructions": "x", "previous_response_id": "resp_gw",
            "input": [{"type": "message", "role": "user", "content": "two"}]}
    chat, held = chat_of(body, history)
    assert held == 2
    chain = {"account": "acct", "id": "resp_qwen", "messages": 2, "at": 1000.0}
    previous = native.chain_of(chain, account="acct", history_messages=held, now=1000.0 + 3600)
    out = native.own_body(chat, body, previous=previous, history_messages=held)
    assert out["previous_response_id"] == "resp_qwen" and out["instructions"] == "x"
    assert out["input"] == [{"type": "message", "role": "user", "content": "two"}]


HELD = {"account": "acct", "id": "resp_q", "messages": 2, "at": 1000.0}


@pytest.mark.parametrize("chain, account, held, now", [
    (HELD, "other", 2, 1000.0),  # another account holds it
    ({**HELD, "messages": 3}, "acct", 2, 1000.0),  # the history differs from what it holds
    (HELD, "acct", 2, 1000.0 + 6 * 86400),  # older than Qwen keeps a response (7 days; 6 here)
    ({**HELD, "at": None}, "acct", 2, 1000.0), (None, "acct", 2, 1000.0),
    ({"account": "acct", "messages": 2, "at": 1000.0}, "acct", 2, 1000.0), ({**HELD, "messages": 0}, "acct", 0, 1000.0)])
def test_no_chain_unless_the_same_account_holds_the_same_history_still(chain, account, held, now):
    assert native.chain_of(chain, account=account, history_messages=held, now=now) is None


def test_an_opening_is_a_first_turn_without_answers_or_tool_outputs():
    body = {"model": "m", "instructions": "x", "input": [{"role": "developer", "content": "d"},
                                                          {"role": "user", "content": "hi"}]}
    assert native.opening(chat_of(body)[0], 0)
    later = {"model": "m", "input": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                     {"role": "user", "content": "c"}]}
    assert not native.opening(chat_of(later)[0], 0)
    assert not native.opening(chat_of(body)[0], 2)  # a continued history


def test_the_messages_held_after_a_turn_are_its_conversation_and_the_answer():
    body = {"model": "m", "instructions": "x", "input": "hi"}
    chat, _ = chat_of(body)
    assert native.held_messages(chat, body) == 2  # the user's message and the answer (instructions apart)


@pytest.mark.parametrize("extra", [
    {"background": True}, {"store": False}, {"text": {"format": {"type": "json_object"}}},
    {"tools": [{"type": "web_search"}]}, {"max_output_tokens": 8}, {"temperature": 2},
    {"tools": TOOLS * 2, "tool_choice": "required"},
    {"input": [{"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "see"}, {"type": "input_image", "image_url": "data:image/png;base64,AA"}]}]}])
def test_what_only_the_translation_serves_is_translated(extra):
    body = {"model": "qwen3-coder-plus", "input": "hi", **extra}
    tools = body.get("tools")
    if tools and tools[0].get("name"):  # two tools under distinct names
        body["tools"] = [TOOLS[0], {**TOOLS[0], "name": "other"}]
    chat, _ = chat_of(body)
    assert native.translated_only(chat, body, model="qwen3-max")


def test_web_search_only_offered_to_a_model_that_does_not_search_is_no_reason_to_translate():
    body = {"model": "qwen3-coder-plus", "input": "hi", "tools": [{"type": "web_search"}]}
    chat, _ = chat_of(body)
    assert native.translated_only(chat, body, model="qwen3-coder-plus") is None
    assert native.translated_only(chat, body, model="qwen3-max") == "web search"  # it searches: translated


def test_a_plain_request_is_not_translated_and_its_verbosity_goes_on_for_the_upstream():
    body = {"model": "qwen3-coder-plus", "input": "hi", "tools": TOOLS, "tool_choice": "auto",
            "text": {"verbosity": "low"}}
    chat, held = chat_of(body)
    assert not native.translated_only(chat, body)
    assert native.own_body(chat, body, previous=None, history_messages=held)["verbosity"] == "low"
