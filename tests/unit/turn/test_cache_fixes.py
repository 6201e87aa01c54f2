"""The opt-in fixes of per-request noise (turn/cache_fixes.py, `qwen_cache_fixes`): the tools of a chat request
sorted by name when asked, so the same tools listed in another order make the same prompt; nothing else of the
request touched, nothing done when the option is off or a tool has no name."""

from __future__ import annotations

import copy

from qwen_gateway.turn import cache_fixes
from helpers.observe_testlib import exchange


def tool(name: str) -> dict:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}


def request(tools: list[dict]):
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "tools": tools}
    ex = exchange(body=body, model="gpt-4o", upstream=False, status=None, usage=None)
    ex.chat_body = body
    return ex


def names(ex) -> list[str]:
    return [t["function"]["name"] for t in ex.chat_body["tools"]]


def test_tool_order_sorts_the_tools_by_name_and_says_so():
    ex = request([tool("write_stdin"), tool("exec_command"), tool("view_image")])
    cache_fixes.apply(ex, cache_fixes.TOOL_ORDER)
    assert names(ex) == ["exec_command", "view_image", "write_stdin"]
    assert ex.notes == ["tools sorted by name for Qwen's prompt cache (qwen_cache_fixes=tool-order)"]


def test_two_orders_of_the_same_tools_become_one_request():
    one, other = request([tool("b"), tool("a"), tool("c")]), request([tool("c"), tool("b"), tool("a")])
    for ex in (one, other):
        cache_fixes.apply(ex, cache_fixes.TOOL_ORDER)
    assert one.chat_body == other.chat_body


def test_tools_already_in_order_are_left_without_a_note():
    ex = request([tool("a"), tool("b")])
    cache_fixes.apply(ex, cache_fixes.TOOL_ORDER)
    assert names(ex) == ["a", "b"] and ex.notes == []


def test_off_leaves_the_request_as_translated():
    ex = request([tool("b"), tool("a")])
    before = copy.deepcopy(ex.chat_body)
    cache_fixes.apply(ex, cache_fixes.OFF)
    assert ex.chat_body == before and ex.notes == []


def test_a_tool_without_a_name_leaves_the_order_as_sent():
    ex = request([tool("b"), {"type": "function", "function": {}}, tool("a")])
    before = copy.deepcopy(ex.chat_body)
    cache_fixes.apply(ex, cache_fixes.TOOL_ORDER)
    assert ex.chat_body == before


def test_a_request_without_tools_is_untouched():
    ex = request([])
    del ex.chat_body["tools"]
    cache_fixes.apply(ex, cache_fixes.TOOL_ORDER)
    assert "tools" not in ex.chat_body and ex.notes == []


def test_only_the_tools_move():
    tools = [tool("b"), tool("a")]
    ex = request(tools)
    messages = ex.chat_body["messages"]
    cache_fixes.apply(ex, cache_fixes.TOOL_ORDER)
    assert ex.chat_body["messages"] is messages and ex.chat_body["tools"][0] is tools[1]
