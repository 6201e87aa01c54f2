"""The way in, item by item (api/responses/items_in.py): each Responses input item into the chat conversation
and the tools Qwen is offered, what is dropped noted, a tool output refused unless it answers a call."""

from __future__ import annotations

import inspect

import pytest

from qwen_gateway.api.responses.chat_messages import ChatMessages
from qwen_gateway.api.responses.items_in import ITEM_TYPES, ItemReader
from qwen_gateway.api.responses.request import translate
from qwen_gateway.api.responses.tools import ToolSet
from qwen_gateway.errors import GatewayError

FN = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
CALL = {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"}
OUTPUT = {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}


@pytest.mark.parametrize("kind, words", [("function_call_output", "function call output"),
                                         ("custom_tool_call_output", "custom tool call output")])
def test_an_output_without_its_call_is_refused_as_openai_does(kind, words):
    with pytest.raises(GatewayError) as e:
        translate({"model": "m", "input": [{"role": "user", "content": "x"}, {**OUTPUT, "type": kind}]})
    err = e.value
    assert (err.status, err.type, err.param, err.code) == (400, "invalid_request_error", "input", None)
    assert err.message == f"No tool call found for {words} with call_id call_1."


def test_an_output_answers_a_call_of_the_input_or_of_the_chain():
    sent = translate({"model": "m", "tools": [FN], "input": [{"role": "user", "content": "x"}, CALL, OUTPUT]})
    assert [m["role"] for m in sent.chat["messages"]] == ["user", "assistant", "tool"]
    chained = translate({"model": "m", "input": [OUTPUT]}, [{"role": "user", "content": "x"}, CALL])
    assert chained.chat["messages"][-1] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    older = [{"role": "user", "content": "x"}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]}]
    assert translate({"model": "m", "input": [OUTPUT]}, chat_history=older).chat["messages"][-1]["role"] == "tool"


def test_an_output_before_its_call_or_after_another_is_refused():
    for items in ([OUTPUT, CALL], [CALL, {**OUTPUT, "call_id": "call_2"}]):
        with pytest.raises(GatewayError) as e:
            translate({"model": "m", "input": [{"role": "user", "content": "x"}, *items]})
        assert e.value.param == "input"


def test_a_stored_chain_is_taken_as_it_was_kept():
    # a chain an older gateway stored with an output answering nothing: continuing from it still works
    t = translate({"model": "m", "input": "go on"}, [{"role": "user", "content": "x"}, OUTPUT])
    assert [m["role"] for m in t.chat["messages"]] == ["user", "tool", "user"]


def test_unknown_item_types_are_still_refused():
    with pytest.raises(GatewayError) as e:
        translate({"model": "m", "input": [{"type": "no_such_item"}]})
    assert e.value.status == 400 and e.value.param == "input[0].type"


@pytest.mark.parametrize("kind", ["has_call", "_init__", "_repr__"])
def test_an_item_type_naming_an_internal_method_is_refused_not_a_crash(kind):
    # the reader picks a handler by the item's type: only item types are handlers, not its other methods
    with pytest.raises(GatewayError) as e:
        translate({"model": "m", "input": [{"type": kind}]})
    assert e.value.status == 400 and e.value.param == "input[0].type"


def test_every_item_handler_is_listed_as_an_item_type():
    handlers = {name[1:] for name, fn in inspect.getmembers(ItemReader, inspect.isfunction)
                if name.startswith("_") and not name.startswith("__")
                and list(inspect.signature(fn).parameters) == ["self", "item", "where"]}
    assert handlers == ITEM_TYPES


def reader(lookup=None, open_sealed=None, effort=None) -> ItemReader:
    return ItemReader(ToolSet(), ChatMessages(), [], open_sealed, lookup, effort)


def read(*items: dict, **kw) -> ItemReader:
    r = reader(**kw)
    for i, item in enumerate(items):
        r.item(item, f"input[{i}]")
    return r


def test_an_item_without_a_type_is_a_message_and_a_developer_speaks_as_system():
    r = read({"role": "developer", "content": "rules"}, {"role": "user", "content": "hi"})
    assert r.conv.messages == [{"role": "system", "content": "rules"}, {"role": "user", "content": "hi"}]


@pytest.mark.parametrize("item, param, code", [
    ({"role": "tool", "content": "x"}, "input[0].role", "invalid_value"),
    ({"role": "user"}, "input[0].content", "missing_required_parameter"),
    ("hello", "input[0]", "invalid_type"),
])
def test_a_malformed_message_is_refused_naming_it(item, param, code):
    with pytest.raises(GatewayError) as e:
        read(item)
    assert (e.value.status, e.value.param, e.value.code) == (400, param, code)


def test_items_recording_hosted_tools_are_dropped_with_one_note_each_kind():
    r = read({"type": "web_search_call"}, {"type": "web_search_call"}, {"type": "mcp_list_tools"},
             {"role": "user", "content": "x"})
    assert r.notes == ["dropped input items Qwen cannot use: web_search_call",
                       "dropped input items Qwen cannot use: mcp_list_tools"]
    assert r.conv.messages == [{"role": "user", "content": "x"}]


def test_an_mcp_call_is_a_call_and_its_output():
    r = read({"type": "mcp_call", "id": "mcp_1", "server_label": "git", "name": "log", "arguments": '{"n":1}',
              "output": "commit abc"})
    assert r.conv.messages == [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "mcp_1", "type": "function", "function": {"name": "git__log", "arguments": '{"n":1}'}}]},
        {"role": "tool", "tool_call_id": "mcp_1", "content": "commit abc"}]


def test_a_failed_mcp_call_gives_qwen_its_error():
    r = read({"type": "mcp_call", "id": "m", "name": "x", "arguments": "{}", "output": None, "error": "denied"})
    assert r.conv.messages[-1]["content"] == "denied"


def test_object_arguments_are_sent_as_json_text():
    r = read({"type": "function_call", "call_id": "c", "name": "f", "arguments": {"ä": 1}})
    assert r.conv.messages[0]["tool_calls"][0]["function"]["arguments"] == '{"ä": 1}'


def test_a_custom_call_is_a_call_with_its_input_as_the_one_parameter():
    r = read({"type": "custom_tool_call", "call_id": "c", "name": "patch", "namespace": "fs", "input": "*** x"})
    fn = r.conv.messages[0]["tool_calls"][0]["function"]
    assert fn == {"name": "fs__patch", "arguments": '{"input": "*** x"}'}


def test_an_apply_patch_output_without_text_says_its_status():
    r = read({"type": "apply_patch_call", "call_id": "p", "operation": {"type": "create_file", "path": "a"}},
             {"type": "apply_patch_call_output", "call_id": "p", "status": "failed"})
    assert r.conv.messages[-1] == {"role": "tool", "tool_call_id": "p", "content": "[failed]"}


def test_a_tool_search_output_without_a_call_id_answers_the_earliest_search():
    r = read({"type": "tool_search_call", "id": "ts_1", "arguments": {"query": "git"}},
             {"type": "tool_search_output", "tools": [{"type": "function", "name": "git_log"}]})
    assert r.conv.messages[-1] == {"role": "tool", "tool_call_id": "ts_1", "content": "Tools now available: git_log."}
    assert [t["function"]["name"] for t in r.tools.chat] == ["git_log"]


def test_a_configuration_update_of_an_earlier_turn_changes_nothing():
    r = reader(effort="high")
    r.item({"type": "configuration_update", "reasoning": {"effort": "low"}}, "previous_response[0]")
    assert r.effort == "high" and r.notes == []
    r.item({"type": "configuration_update"}, "input[0]")
    assert r.effort == "high" and r.notes == ["configuration_update without a reasoning effort ignored"]


def test_a_reference_to_nothing_stored_is_dropped_with_a_note_and_not_kept():
    r = read({"type": "item_reference", "id": "msg_x"}, lookup=lambda i: None)
    assert r.conv.messages == [] and r.resolved == []
    assert r.notes == ["item_reference msg_x dropped: no stored item with that id"]


def test_a_resolved_reference_is_kept_as_the_item_it_names():
    stored = {"type": "message", "role": "user", "content": "kept"}
    r = read({"type": "item_reference", "id": "msg_1"}, lookup={"msg_1": stored}.get)
    assert r.resolved == [stored] and r.conv.messages == [{"role": "user", "content": "kept"}]


def test_a_reference_to_a_reference_is_not_followed():
    r = read({"type": "item_reference", "id": "a"}, lookup={"a": {"type": "item_reference", "id": "a"}}.get)
    assert r.conv.messages == [] and r.resolved == []


def test_the_previous_responses_items_are_read_but_not_this_requests_record():
    r = reader()
    r.item({"role": "user", "content": "old"}, "previous_response[0]")
    assert r.resolved == [] and r.conv.messages == [{"role": "user", "content": "old"}]


def test_reasoning_without_sealed_content_is_dropped_with_a_note():
    r = read({"type": "reasoning", "summary": [{"type": "summary_text", "text": "t"}]},
             open_sealed=lambda kind, token: None)
    assert r.conv.reasoning is None
    assert r.notes == ["reasoning summaries dropped (no sealed content to give back to Qwen)"]


def test_sealed_reasoning_items_join_for_the_next_assistant_message():
    opened = {"a": {"text": "first"}, "b": {"text": "second"}}
    r = read({"type": "reasoning", "encrypted_content": "a"}, {"type": "reasoning", "encrypted_content": "b"},
             {"role": "assistant", "content": "done"}, open_sealed=lambda kind, token: opened[token])
    assert r.conv.messages == [{"role": "assistant", "content": "done", "reasoning_content": "first\nsecond"}]


def test_a_compaction_trigger_in_the_middle_is_only_noted():
    r = read({"type": "compaction_trigger"}, {"role": "user", "content": "x"})
    assert r.notes == ["compaction_trigger ignored: only a trailing one compacts"] and len(r.conv.messages) == 1
