"""Tools by prompt emulation (upstream/qwenweb/tools.py): the system block that declares them, earlier calls
written back as the model writes them, and the `<tool_call>` parser with its tags split at every offset."""

from __future__ import annotations

import json

import pytest

from qwen_gateway.upstream.qwenweb.tools import CLOSE, OPEN, ToolCallParser, call_text, describe

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


def test_tool_choice_none_leaves_the_tools_out_and_required_says_so():
    assert describe(TOOLS, "none") is None and describe([], "auto") is None
    assert "must call at least one" in (describe(TOOLS, "required") or "")
    forced = describe(TOOLS, {"type": "function", "function": {"name": "get_weather"}}) or ""
    assert "must call the function get_weather" in forced


TEXT = 'Let me check. <tool_call>{"name": "a", "arguments": {"x": "<b>"}}</tool_call> and <tool_call>' \
       '{"name": "b", "arguments": "{}"}</tool_call> done <tool'


def parse(pieces: list[str]) -> list[tuple[str, object]]:
    p = ToolCallParser()
    out = [ev for piece in pieces for ev in p.feed(piece)] + p.flush()
    merged: list[tuple[str, object]] = []
    for kind, value in out:  # adjacent text pieces joined: where text is cut does not matter
        if kind == "text" and merged and merged[-1][0] == "text":
            merged[-1] = ("text", str(merged[-1][1]) + str(value))
        else:
            merged.append((kind, value))
    return merged


EXPECTED = [("text", "Let me check. "), ("call", {"name": "a", "arguments": '{"x": "<b>"}'}), ("text", " and "),
            ("call", {"name": "b", "arguments": "{}"}), ("text", " done <tool")]


@pytest.mark.parametrize("cut", range(len(TEXT) + 1))
def test_the_parser_finds_calls_split_at_any_offset(cut):
    assert parse([TEXT[:cut], TEXT[cut:]]) == EXPECTED


def test_the_parser_one_character_at_a_time_and_what_is_not_a_call():
    assert parse(list(TEXT)) == EXPECTED
    assert parse(["<tool_call>not json</tool_call>"]) == [("text", "<tool_call>not json</tool_call>")]
    assert parse(["a <tool_call>{\"name\": \"x\""]) == [("text", 'a <tool_call>{"name": "x"')]  # never closed
    assert parse(["a < b"]) == [("text", "a < b")]


def test_the_tools_block_declares_each_function_with_its_parameters():
    block = describe(TOOLS + [{"type": "web_search"}, {"type": "function", "function": {"name": "bare"}}], "auto")
    lines = block.splitlines()
    assert lines[0] == "# Tools" and f'{OPEN}{{"name": "<function name>", "arguments": {{...}}}}{CLOSE}' in lines
    assert json.loads(lines[-2]) == {"name": "get_weather", "description": "Weather.",
                                     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
    assert json.loads(lines[-1]) == {"name": "bare", "description": "", "parameters": {"type": "object",
                                                                                      "properties": {}}}


def test_an_earlier_call_is_written_as_the_model_writes_one():
    assert call_text("f", '{"a": 1}') == '<tool_call>{"name": "f", "arguments": {"a": 1}}</tool_call>'
    assert call_text("f", "") == '<tool_call>{"name": "f", "arguments": {}}</tool_call>'
    assert call_text("f", "{not json") == '<tool_call>{"name": "f", "arguments": "{not json"}</tool_call>'


def test_a_call_with_parameters_or_without_arguments_and_one_without_a_name():
    assert parse(['<tool_call>{"name": "f", "parameters": {"x": 1}}</tool_call>']) == [
        ("call", {"name": "f", "arguments": '{"x": 1}'})]
    assert parse(['<tool_call>{"name": "f"}</tool_call>']) == [("call", {"name": "f", "arguments": "{}"})]
    assert parse(['<tool_call>{"name": ""}</tool_call>']) == [("text", '<tool_call>{"name": ""}</tool_call>')]
