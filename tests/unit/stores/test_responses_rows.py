"""What a stored Response is on disk (stores/responses_rows.py, through responses.py): made by the store's worker
thread, each part once as compact JSON, a row of its own only for an item with an id; an input item without one
is found by the id its listing gives it (`input_id`), and listed in the spec's form (`listed`); a large write leaves
no large write-ahead log."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from qwen_gateway.api.responses.history import kept_inputs
from qwen_gateway.api.responses.items import new_id
from qwen_gateway.stores import responses_rows as rows
from qwen_gateway.stores.responses import ResponseStore
from qwen_gateway.stores.responses_rows import input_id, input_place, rows_of

RID = new_id("resp")
ANSWER = {"id": RID, "object": "response", "output": [{"id": "msg_out", "type": "message", "role": "assistant",
                                                       "content": [{"type": "output_text", "text": "ok"}]}]}
INPUT = {"input": [{"role": "user", "content": "first", "internal_chat_message_metadata_passthrough": {"x": 1}},
                   {"type": "function_call_output", "call_id": "c1", "output": "42"},
                   {"id": "msg_mine", "type": "message", "role": "user", "content": "named"}]}


def test_input_ids_name_the_response_and_the_place():
    assert input_place(input_id("msg", RID, 0)) == (RID, 0)
    assert input_place(input_id("fco", RID, 9_999)) == (RID, 9_999)
    assert input_place(new_id("msg")) is None and input_place("msg_mine") is None  # new ids and the client's


def test_rows_keep_each_part_once_and_a_row_only_for_an_item_with_an_id():
    rid, owner, _, response, history, inputs, items = rows_of(ANSWER, {"items": []}, kept_inputs(INPUT), "alice")
    assert (rid, owner, json.loads(response)) == (RID, "alice", ANSWER)
    assert json.loads(inputs) == [{"role": "user", "content": "first"}, INPUT["input"][1], INPUT["input"][2]]
    assert [(i[0], i[1], i[3]) for i in items] == [("msg_mine", RID, "alice"), ("msg_out", RID, "alice")]
    assert " " not in inputs.replace('"first"', "")  # compact JSON


def test_the_parts_are_made_by_the_writer_thread(tmp_path):
    made: list[str] = []

    def history() -> dict:
        made.append(threading.current_thread().name)
        return {"items": []}

    async def put() -> None:
        await ResponseStore(tmp_path / "r.sqlite3").put(ANSWER, history, lambda: kept_inputs(INPUT), owner="")

    asyncio.run(put())
    assert made and made[0] != threading.main_thread().name


@pytest.fixture
def stored(tmp_path) -> ResponseStore:
    store = ResponseStore(tmp_path / "responses.sqlite3")
    store.put(ANSWER, {"items": []}, lambda: kept_inputs(INPUT), owner="alice")  # no loop: at once
    return store


def test_inputs_are_listed_in_the_specs_form_with_the_same_ids_every_time(stored):
    listed = stored.inputs(RID, "alice")
    assert listed == stored.inputs(RID, "alice")
    assert [i["id"] for i in listed] == [input_id("msg", RID, 0), input_id("fco", RID, 1), "msg_mine"]
    assert listed[0] == {"id": input_id("msg", RID, 0), "type": "message", "role": "user", "status": "completed",
                         "content": [{"type": "input_text", "text": "first"}]}
    assert listed[1]["status"] == "completed" and listed[1]["output"] == "42"
    assert stored.inputs(RID, "bob") is None


def test_an_input_item_is_found_by_its_listed_id_and_by_its_owner_only(stored):
    first, second = input_id("msg", RID, 0), input_id("fco", RID, 1)
    assert stored.item(first, "alice") == {"role": "user", "content": "first", "id": first}
    assert stored.item(second, "alice")["call_id"] == "c1"
    assert stored.item("msg_mine", "alice")["content"] == "named" and stored.item("msg_out", "alice")["id"] == "msg_out"
    assert stored.has_item(first, "alice") and not stored.has_item(first, "bob")
    assert stored.item(first, "bob") is None
    assert stored.item(input_id("msg", RID, 1), "alice") is None  # the place holds another kind of item
    assert stored.item(input_id("msg", RID, 3), "alice") is None  # no such place
    assert stored.item(input_id("msg", new_id("resp"), 0), "alice") is None  # no such response


def test_a_large_write_leaves_no_large_write_ahead_log(tmp_path):
    store = ResponseStore(tmp_path / "responses.sqlite3")
    body = {"input": [{"role": "user", "content": f"message {i} " + "x" * 200} for i in range(8_000)]}
    size = len(json.dumps(body["input"], separators=(",", ":")))
    assert size > 1 << 20
    store.put(ANSWER, {"items": kept_inputs(body)}, lambda: kept_inputs(body), owner="")
    wal = tmp_path / "responses.sqlite3-wal"
    on_disk = sum(f.stat().st_size for f in tmp_path.glob("responses.sqlite3*"))
    assert not wal.exists() or wal.stat().st_size == 0
    assert on_disk < 2.3 * size  # the conversation and the input items: each once


def test_listed_inputs_take_the_specs_form():
    listed = rows.listed({"role": "user", "content": "hi"}, "resp_" + "a" * 32, 0)
    assert listed == {"role": "user", "type": "message", "content": [{"type": "input_text", "text": "hi"}],
                      "status": "completed", "id": "msg_" + "a" * 32 + "0"}


def test_a_listed_input_keeps_its_own_id_and_status():
    item = {"type": "function_call_output", "id": "fco_mine", "status": "incomplete", "call_id": "c", "output": ""}
    assert rows.listed(item, "resp_" + "a" * 32, 5) == item


def test_an_item_type_the_spec_lists_without_status_gets_none():
    assert "status" not in rows.listed({"type": "reasoning", "summary": []}, None, 0)


@pytest.mark.parametrize("place", [0, 9, 15, 4096])
def test_an_input_id_names_its_response_and_place(place):
    rid = "resp_" + "0123456789abcdef" * 2
    item_id = rows.input_id("fco", rid, place)
    assert rows.input_place(item_id) == (rid, place)


@pytest.mark.parametrize("item_id", ["msg_1", "msg_" + "a" * 31, "xyz_" + "a" * 33, "msg_" + "A" * 33])
def test_other_ids_name_no_place(item_id):
    assert rows.input_place(item_id) is None
