"""The client's tools as the chat functions Qwen is offered (api/responses/tools.py): namespaces flattened,
freeform tools as one string parameter, tool_search as a function, hosted tools dropped, what each name stands
for kept; and the tools a Response echoes."""

from __future__ import annotations

import pytest

from qwen_gateway.api.responses import tools
from qwen_gateway.api.responses.request import translate
from qwen_gateway.api.responses.tools import ToolRef, ToolSet
from unit.api.responses.test_items import APPLY_PATCH, FN, FUNCTIONS_NS, GRAMMAR, NAMESPACE, names, user


def test_additional_tools_join_and_namespaces_flatten():
    body = {"model": "m", "tools": [FN], "input": [
        {"type": "additional_tools", "role": "developer", "tools": [NAMESPACE, FUNCTIONS_NS, FN]}, user("hi")]}
    t = translate(body)
    assert names(t.chat) == ["exec_command", "clock__sleep", "exec", "wait"]  # FN offered once
    assert t.tools["clock__sleep"] == ToolRef("function", "sleep", "clock")
    assert t.tools["exec"] == ToolRef("custom", "exec", "functions")
    sleep = next(x["function"] for x in t.chat["tools"] if x["function"]["name"] == "clock__sleep")
    assert "Time tools" in sleep["description"]  # the namespace's description goes with its members
    assert all(m["role"] != "developer" for m in t.chat["messages"])


def test_custom_tool_offered_as_function_with_one_string_and_grammar():
    t = translate({"model": "m", "tools": [APPLY_PATCH], "input": "edit"})
    (tool,) = t.chat["tools"]
    fn = tool["function"]
    assert fn["name"] == "apply_patch" and fn["parameters"]["required"] == ["input"]
    assert fn["parameters"]["properties"]["input"]["type"] == "string"
    assert GRAMMAR.strip() in fn["description"] and "lark" in fn["description"]


def test_tool_choice_for_custom_and_namespaced_tools():
    body = {"model": "m", "tools": [APPLY_PATCH, NAMESPACE], "input": "x"}
    assert translate({**body, "tool_choice": {"type": "custom", "name": "apply_patch"}}).chat["tool_choice"] == \
        {"type": "function", "function": {"name": "apply_patch"}}
    assert translate({**body, "tool_choice": {"type": "function", "name": "sleep", "namespace": "clock"}}).chat[
        "tool_choice"]["function"]["name"] == "clock__sleep"


def test_hosted_tools_dropped_with_a_note():
    notes: list[str] = []
    t = translate({"model": "m", "tools": [FN, {"type": "file_search"}, {"type": "tool_search", "execution": "server"}],
                   "input": "x"}, notes=notes)
    assert names(t.chat) == ["exec_command"]
    assert any("file_search" in n and "tool_search" in n for n in notes)  # web_search: tests/unit/api/test_websearch.py


# ---- ToolSet and the echo, directly --------------------------------------------------------------------------

@pytest.mark.parametrize("namespace, name, qualified", [(None, "f", "f"), ("", "f", "f"), ("functions", "f", "f"),
                                                        ("clock", "sleep", "clock__sleep"), (3, "f", "f")])
def test_the_name_qwen_sees(namespace, name, qualified):
    assert tools.qualified(namespace, name) == qualified


def test_a_tool_offered_twice_is_offered_once_the_first_wins():
    ts = ToolSet()
    ts.add_all([FN, {**FN, "description": "second"}])
    assert len(ts.chat) == 1 and ts.chat[0]["function"]["description"] == "Run a command"


def test_a_client_tool_search_is_a_function_with_a_query_by_default():
    ts = ToolSet()
    ts.add({"type": "tool_search", "execution": "client"})
    assert ts.refs["tool_search"] == ToolRef("tool_search", "tool_search")
    assert ts.chat[0]["function"] == {"name": "tool_search", "description": "Search for more tools to use.",
                                      "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                                                     "required": ["query"]}}


def test_a_web_search_tool_is_kept_aside_not_offered():
    ts = ToolSet()
    ts.add({"type": "web_search"})
    assert ts.search == {"type": "web_search"} and ts.chat == [] and ts.dropped == []


def test_what_cannot_be_offered_is_listed_as_dropped():
    ts = ToolSet()
    ts.add_all([{"type": "function"}, {"type": "namespace", "name": "outer", "tools": [
        {"type": "namespace", "name": "inner", "tools": []}]}, "junk"])
    assert ts.dropped == ["function", "namespace (nested)"] and ts.chat == []
    ts.add_all("not a list")
    assert ts.chat == []


def test_a_function_keeps_its_parameters_and_strict_only_when_sent():
    ts = ToolSet()
    ts.add({"type": "function", "name": "f", "strict": True, "parameters": None})
    assert ts.chat[0]["function"] == {"name": "f", "strict": True}


def test_a_custom_tool_without_a_grammar_has_only_the_hint():
    fn = tools.custom_function({"type": "custom", "format": {"type": "text"}}, "notes")
    assert fn["description"].startswith("This tool takes free-form text") and "grammar" not in fn["description"]
    assert fn["parameters"]["additionalProperties"] is False


def test_the_response_echoes_function_tools_with_strict_and_parameters():
    body = {"tools": [{"type": "function", "name": "f"}, APPLY_PATCH, NAMESPACE, {"type": "web_search"},
                      {"type": "function"}]}
    assert tools.echo_tools(body) == [{"type": "function", "name": "f", "strict": False, "parameters": None},
                                      APPLY_PATCH, NAMESPACE]
