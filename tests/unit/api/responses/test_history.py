"""What the gateway keeps of a Response for later requests (api/responses/history.py): every item so far and the
answer, its reasoning sealed; a compaction's user messages and summary; the input items as they are stored (their
listed form and ids: tests/unit/stores/test_responses_rows.py)."""

from __future__ import annotations

import json

from qwen_gateway.api.responses import history
from qwen_gateway.api.responses.compaction import SUMMARY_PREFIX
from qwen_gateway.api.responses.history import history_items
from qwen_gateway.api.responses.request import translate
from unit.api.responses.test_items import NAMESPACE, names, sealer, user  # noqa: F401  (sealer: a fixture)

APPLY_PATCH = {"type": "custom", "name": "apply_patch", "description": "Edit files. FREEFORM.",
               "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}


def test_history_keeps_every_earlier_item_but_not_instructions(sealer):
    body = {"model": "m", "instructions": "only for this response", "input": [
        {"type": "additional_tools", "role": "developer", "tools": [NAMESPACE]},
        {"type": "message", "role": "developer", "content": "project rules"},
        {"type": "message", "role": "system", "content": "system rules"}, user("q1")]}
    t = translate(body)
    assert t.chat["messages"][0] == {"role": "system", "content": "only for this response"}
    response = {"output": [{"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "hm"}]},
                           {"type": "message", "role": "assistant",
                            "content": [{"type": "output_text", "text": "a1"}]}]}
    history = history_items(t.items, response, sealer.seal)
    later = translate({"model": "m", "input": "q2"}, history, open_sealed=sealer.open)
    msgs = later.chat["messages"]
    assert [m["role"] for m in msgs] == ["system", "system", "user", "assistant", "user"]
    assert [m["content"] for m in msgs] == ["project rules", "system rules", "q1", "a1", "q2"]
    assert msgs[3]["reasoning_content"] == "hm"  # the gateway's own record: its reasoning goes back
    assert names(later.chat) == ["clock__sleep"]  # tools from an earlier additional_tools item carry over


def test_history_of_calls_and_references():
    stored = {"msg_9": user("referenced")}
    t = translate({"model": "m", "tools": [APPLY_PATCH, NAMESPACE], "input": [
        {"type": "item_reference", "id": "msg_9"}, user("x")]}, lookup=stored.get)
    response = {"output": [
        {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "P"},
        {"type": "function_call", "call_id": "c2", "name": "sleep", "namespace": "clock", "arguments": "{}"}]}
    history = history_items(t.items, response)
    assert history[0] == stored["msg_9"]  # references resolved once, when stored
    later = translate({"model": "m", "tools": [APPLY_PATCH, NAMESPACE], "input": [
        {"type": "custom_tool_call_output", "call_id": "c1", "output": "ok"},
        {"type": "function_call_output", "call_id": "c2", "output": "slept"}]}, history)
    turn = later.chat["messages"][2]
    assert [c["function"]["name"] for c in turn["tool_calls"]] == ["apply_patch", "clock__sleep"]
    assert json.loads(turn["tool_calls"][0]["function"]["arguments"]) == {"input": "P"}


def test_compaction_history_keeps_user_messages_and_the_summary():
    t = translate({"model": "m", "input": [user("goal"), {"type": "message", "role": "assistant", "content": "x"},
                                           {"type": "compaction_trigger"}]})
    history = history_items(t.items, {"output": []}, summary="did x")
    later = translate({"model": "m", "input": "next"}, history).chat["messages"]
    assert [m["content"] for m in later] == ["goal", SUMMARY_PREFIX + "did x", "next"]


# ---- history_items and the listed inputs, directly ---------------------------------------------------------

def test_the_clients_bookkeeping_is_not_kept():
    items = [{"type": "message", "role": "user", "content": "a", "internal_chat_message_metadata_passthrough": {}}]
    assert history_items(items, {"output": []}) == [{"type": "message", "role": "user", "content": "a"}]


def test_reasoning_without_a_summary_is_sealed_from_the_streams_text(sealer):
    response = {"output": [{"type": "reasoning", "id": "rs_1", "summary": []}]}
    (item,) = history_items([], response, sealer.seal, reasoning={"rs_1": "thought"})
    assert sealer.open("reasoning", item["encrypted_content"]) == {"text": "thought"}


def test_reasoning_with_no_text_at_all_is_kept_unsealed(sealer):
    response = {"output": [{"type": "reasoning", "id": "rs_1", "summary": []}]}
    assert history_items([], response, sealer.seal) == response["output"]


def test_a_compaction_keeps_user_system_and_developer_messages_but_no_earlier_summary():
    items = [{"role": "system", "content": "s"}, {"type": "message", "role": "developer", "content": "d"},
             {"type": "message", "role": "user", "content": SUMMARY_PREFIX + "old"},
             {"type": "message", "role": "assistant", "content": "a"},
             {"type": "function_call", "call_id": "c"}, {"role": "user", "content": "u"}]
    kept = history_items(items, {"output": [{"type": "message"}]}, summary="new")
    assert [i["content"] for i in kept] == ["s", "d", "u", SUMMARY_PREFIX + "new"]


def test_kept_inputs_of_a_string_and_of_items():
    assert history.kept_inputs({"input": "hi"}) == [{"type": "message", "role": "user", "content": "hi"}]
    assert history.kept_inputs({"input": [{"role": "user", "content": "a"}, "junk"]}) == [
        {"role": "user", "content": "a"}]
    assert history.kept_inputs({}) == []


def test_input_items_without_a_response_get_new_ids_each_time():
    body = {"input": [{"role": "user", "content": "a"}]}
    first, again = history.input_items(body), history.input_items(body)
    assert first[0]["id"].startswith("msg_") and first[0]["id"] != again[0]["id"]
    rid = "resp_" + "b" * 32
    assert history.input_items(body, rid) == history.input_items(body, rid)  # the same ids at every read
    assert json.dumps(history.input_items(body, rid))  # plain JSON, as the store keeps it
