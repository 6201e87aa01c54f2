"""The request surface (request_surface.py): a dialect's knobs reach the chat form by its rows, and each provider's
body does with every chat-form field what its column says — sent, renamed, read by its rule, kept, or dropped with a
note."""

from __future__ import annotations

import pytest

from qwen_gateway import request_surface as rs
from qwen_gateway.api.messages.request import to_chat as messages_to_chat
from qwen_gateway.api.responses.request import translate
from qwen_gateway.upstream.dashscope.request import chat_to_qwen
from qwen_gateway.upstream.qwenweb.request import completion_body
from qwen_gateway.upstream.selfhosted.request import chat_body

USER = [{"role": "user", "content": "hi"}]
# a value each chat-form field may carry (the structure's own rows are exercised by their modules' tests)
VALUES = {
    "parallel_tool_calls": False, "response_format": {"type": "text"}, "reasoning_effort": "low",
    "enable_thinking": True, "thinking_budget": 100, "chat_template_kwargs": {"x": 1}, "web_search_options": {},
    "enable_search": True, "search_options": {"forced_search": False}, "vl_high_resolution_images": True,
    "stream": False, "stream_options": {"include_usage": True}, "temperature": 0.5, "top_p": 0.5, "top_k": 5,
    "max_tokens": 40, "max_completion_tokens": 50, "stop": ["END"], "seed": 7, "presence_penalty": 0.1,
    "frequency_penalty": 0.1, "n": 1, "logprobs": False, "top_logprobs": 0, "min_p": 0.1, "repetition_penalty": 1.1,
    "user": "u1", "prompt_cache_key": "k", "prompt_cache_retention": "24h", "prompt_cache_options": {"ttl": "1h"},
    "cache_control": {"type": "ephemeral"}, "verbosity": "low", "store": True, "metadata": {"a": "b"},
    "service_tier": "auto", "safety_identifier": "s", "moderation": {"mode": "off"}, "modalities": ["text"],
    "audio": {"voice": "x"}, "prediction": {"type": "content", "content": "x"},
}
STRUCTURE = ("model", "messages", "tools", "tool_choice")


def test_every_field_but_the_structure_has_a_value_here():
    assert set(VALUES) | set(STRUCTURE) == {f.chat for f in rs.FIELDS}


def test_carry_copies_a_dialects_knobs_under_their_chat_names_and_skips_nulls():
    chat = rs.carry("responses", {"max_output_tokens": 50, "temperature": None, "text": {"verbosity": "low"},
                                  "prompt_cache_retention": "24h"}, {})
    assert chat == {"max_completion_tokens": 50, "verbosity": "low", "prompt_cache_retention": "24h"}
    assert rs.carry("completions", {"max_tokens": 9, "stop": ["x"], "seed": 1, "echo": False}, {}) == {
        "max_tokens": 9, "stop": ["x"], "seed": 1}


def test_the_same_ask_reaches_the_chat_form_the_same_way_from_each_dialect():
    chat_ask = {"max_completion_tokens": 50, "temperature": 0.5, "top_p": 0.9}
    responses = translate({"model": "m", "input": "hi", "max_output_tokens": 50, "temperature": 0.5, "top_p": 0.9},
                          notes=[]).chat
    messages = messages_to_chat({"model": "m", "messages": USER, "max_tokens": 50, "temperature": 0.5, "top_p": 0.9},
                                [], lambda text, sig: text)
    for chat in (responses, messages):
        assert {k: chat[k] for k in chat_ask} == chat_ask


@pytest.mark.parametrize("field", sorted(VALUES))
def test_dashscope_does_with_each_field_what_its_column_says(field):
    fate, notes = rs.fates("dashscope")[field], []
    body = chat_to_qwen({"model": "qwen3.6-plus", "messages": USER, field: VALUES[field]}, model="qwen3.6-plus",
                        oauth=False, notes=notes)
    if fate.kind == "send":
        assert body[field] == VALUES[field]
    elif fate.kind == "rename":
        assert field not in body and body[fate.what] == VALUES[field]
    elif fate.kind in ("own", "drop") and field != "metadata":
        assert field not in body  # (qwen-code's own metadata is sent in its place)
    elif fate.kind == "read" and fate.what in ("rules.session_id", "rules.verbosity_hint"):
        assert field not in body  # read first, never sent
    if fate.kind == "drop":
        assert f"{field} not sent: {fate.what}" in notes


@pytest.mark.parametrize("field", sorted(VALUES))
def test_a_self_hosted_server_gets_what_its_column_sends_and_hears_why_not(field):
    fate, notes = rs.fates("selfhosted")[field], []
    body = chat_body({"model": "m", "messages": USER, field: VALUES[field]}, model="Qwen/Qwen3-8B", notes=notes)
    if fate.kind in ("send", "own", "drop"):  # a rule or a reader sends what it means (or nothing)
        assert (field in body) is fate.sent
    if fate.kind == "drop":
        assert f"{field} not sent: {fate.what}" in notes


@pytest.mark.parametrize("field", sorted(f for f in VALUES if rs.fates("qwenweb")[f].kind == "drop"))
def test_a_web_account_notes_each_field_its_column_drops(field):
    notes: list[str] = []
    completion_body({"messages": USER, field: VALUES[field]}, model="qwen3.7-max", notes=notes)
    assert f"{field}: {rs.fates('qwenweb')[field].what}: dropped" in notes


@pytest.mark.parametrize("dialect, body", [
    ("responses", {"model": "m", "input": "hi"}),
    ("messages", {"model": "m", "messages": USER, "max_tokens": 10}),
])
def test_each_ignored_field_notes_itself(dialect, body):
    for name in rs.IGNORED_BY[dialect]:
        notes: list[str] = []
        if dialect == "responses":
            translate({**body, name: {}}, notes=notes)
        else:
            messages_to_chat({**body, name: {}}, notes, lambda text, sig: text)
        assert rs.IGNORED_NOTE.format(name) in notes, name
