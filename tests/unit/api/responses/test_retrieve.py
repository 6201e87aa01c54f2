"""The stored Responses answered locally (api/responses/retrieve.py): GET/DELETE of a response, its input items
paged as OpenAI pages them, cancel and background streams, and the input token count."""

from __future__ import annotations

import json

import pytest

from qwen_gateway.api.responses import retrieve
from qwen_gateway.api.responses.retrieve import item_page
from qwen_gateway.stores.responses import ResponseStore
from qwen_gateway.errors import GatewayError


def test_item_pages_like_openai():
    items = [{"id": f"i{n}"} for n in range(5)]
    page = item_page(items, {"limit": "2"})
    assert [i["id"] for i in page["data"]] == ["i4", "i3"] and page["has_more"] and page["last_id"] == "i3"
    page = item_page(items, {"order": "asc", "after": "i3"})
    assert [i["id"] for i in page["data"]] == ["i4"] and not page["has_more"]
    with pytest.raises(GatewayError):
        item_page(items, {"limit": "0"})


# ---- GET/DELETE /v1/responses/{id} and its input items, on a real local store -----------------------------

RID = "resp_" + "c" * 32
DONE = {"id": RID, "object": "response", "status": "completed", "background": False, "output": [],
        "temperature": None, "top_p": None}
BACKGROUND = {**DONE, "id": "resp_" + "d" * 32, "status": "in_progress", "background": True}


@pytest.fixture
def store(tmp_path) -> ResponseStore:
    s = ResponseStore(tmp_path / "responses.sqlite3")
    s.put(DONE, {"items": []}, lambda: [{"role": "user", "content": "q"}], owner="alice")
    s.put(BACKGROUND, {"items": []}, lambda: [], owner="alice")
    return s


async def answered(store: ResponseStore, method: str, rest: str, query: dict | None = None,
                   owner: str = "alice") -> tuple[int, object]:
    resp = await retrieve.stored(store, method, rest, query or {}, owner)
    return resp.status_code, json.loads(resp.content) if resp.content.startswith(b"{") else resp.content


async def test_a_stored_response_is_shown_as_one_made_now(store):
    status, body = await answered(store, "GET", RID)
    assert status == 200 and body["id"] == RID and (body["temperature"], body["top_p"]) == (1.0, 1.0)


async def test_another_keys_response_is_not_found(store):
    with pytest.raises(GatewayError) as e:
        await answered(store, "GET", RID, owner="bob")
    assert (e.value.status, e.value.code, e.value.param) == (404, "not_found", "response_id")
    assert e.value.message == f"Response with id '{RID}' not found."


async def test_a_delete_says_deleted_then_the_response_is_gone(store):
    assert await answered(store, "DELETE", RID) == (200, {"id": RID, "object": "response", "deleted": True})
    with pytest.raises(GatewayError) as e:
        await answered(store, "DELETE", RID)
    assert e.value.status == 404


async def test_input_items_are_listed_as_a_page(store):
    status, page = await answered(store, "GET", f"{RID}/input_items")
    assert status == 200 and page["object"] == "list" and [i["content"] for i in page["data"]] == [
        [{"type": "input_text", "text": "q"}]]


@pytest.mark.parametrize("rest, query, param", [(f"{RID}/cancel", {}, "response_id"),
                                                (RID, {"stream": "true"}, "stream")])
async def test_only_a_background_response_is_cancelled_or_streamed(store, rest, query, param):
    with pytest.raises(GatewayError) as e:
        await answered(store, "POST" if rest.endswith("cancel") else "GET", rest, query)
    assert (e.value.status, e.value.param) == (400, param)


async def test_a_background_response_no_run_holds_reads_failed(store):
    # the gateway that ran it stopped: it will never finish
    status, body = await answered(store, "GET", BACKGROUND["id"])
    assert status == 200 and body["status"] == "failed" and body["error"]["code"] == "server_error"
    with pytest.raises(GatewayError) as e:
        await answered(store, "GET", BACKGROUND["id"], {"stream": "true"})
    assert e.value.param == "stream"


@pytest.mark.parametrize("method, rest", [("PUT", RID), ("GET", f"{RID}/output_items"), ("POST", RID)])
async def test_other_urls_are_unknown(store, method, rest):
    with pytest.raises(GatewayError) as e:
        await answered(store, method, rest)
    assert (e.value.status, e.value.code) == (404, "unknown_url")


async def test_input_tokens_are_counted_from_the_translated_prompt(store):
    counted = await retrieve.count_input_tokens(store, {"model": "m", "input": "hello there"}, "alice")
    assert counted["object"] == "response.input_tokens" and counted["input_tokens"] > 0
    longer = await retrieve.count_input_tokens(store, {"model": "m", "input": "hello there " * 50}, "alice")
    assert longer["input_tokens"] > counted["input_tokens"]


async def test_input_tokens_of_a_continuation_from_another_keys_response_is_a_400(store):
    with pytest.raises(GatewayError) as e:
        await retrieve.count_input_tokens(store, {"previous_response_id": RID}, "bob")
    assert (e.value.status, e.value.param) == (400, "previous_response_id")


# ---- item_page -------------------------------------------------------------------------------------------

ITEMS = [{"id": f"i{n}"} for n in range(5)]


def test_a_page_says_its_ends_and_an_empty_one_says_empty_ids():
    page = item_page(ITEMS, {"order": "asc", "limit": "5"})
    assert (page["first_id"], page["last_id"], page["has_more"]) == ("i0", "i4", False)
    assert item_page([], {}) == {"object": "list", "data": [], "has_more": False, "first_id": "", "last_id": ""}


def test_after_an_id_not_listed_is_an_empty_page():
    assert item_page(ITEMS, {"after": "nope"})["data"] == []


@pytest.mark.parametrize("query, param", [({"order": "up"}, "order"), ({"limit": "101"}, "limit"),
                                          ({"limit": "ten"}, "limit")])
def test_a_bad_order_or_limit_is_refused_naming_it(query, param):
    with pytest.raises(GatewayError) as e:
        item_page(ITEMS, query)
    assert (e.value.status, e.value.param, e.value.code) == (400, param, "invalid_value")


def test_stored_chat_completions_page_oldest_first_by_default():
    assert [i["id"] for i in item_page(ITEMS, {"limit": "2"}, default_order="asc")["data"]] == ["i0", "i1"]
