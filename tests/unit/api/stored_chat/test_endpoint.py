"""/v1/chat/completions with stored completions (api/stored_chat/endpoint.py): a `store: true` stream kept as the
client got it, the metadata update, and the /v1/chat/completions/{id} family on a real local store."""

from __future__ import annotations

import json
import time

import pytest

from qwen_gateway.api.chat import ChatStreamTranslator
from qwen_gateway.stores.responses import ResponseStore
from qwen_gateway.api.stored_chat import endpoint
from qwen_gateway.api.stored_chat.endpoint import KeptChatStreamTranslator, update_metadata
from qwen_gateway.api.stored_chat.records import row_of
from qwen_gateway.stores.stored_chat import ChatStore
from qwen_gateway.errors import GatewayError
from qwen_gateway.exchange import ClientRequest, Exchange


def _chunk(delta: dict, finish: str | None = None, usage: dict | None = None, choices: bool = True) -> dict:
    chunk = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 7, "model": "gpt-4o",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else []}
    if usage:
        chunk["usage"] = usage
    return chunk


def test_an_update_takes_metadata_only():
    assert update_metadata({"metadata": {"a": "b"}}) == {"a": "b"}
    for body, param in (({"metadata": {}, "model": "x"}, "model"), ({}, "metadata"), ({"metadata": 5}, "metadata")):
        with pytest.raises(GatewayError) as e:
            update_metadata(body)
        assert e.value.status == 400 and e.value.param == param


def test_a_kept_stream_sends_the_same_bytes_and_assembles_the_completion_the_client_got():
    body = {"model": "gpt-4o", "messages": [], "store": True}
    chunks = [_chunk({"role": "assistant", "content": "Echo"}), _chunk({"content": ": hi"}), _chunk({}, "stop"),
              _chunk({}, usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}, choices=False)]
    plain, kept = ChatStreamTranslator(False, body), KeptChatStreamTranslator(False, body)
    assert [plain.feed(c) for c in chunks] == [kept.feed(c) for c in chunks]
    assert kept.finish() == plain.finish()
    completion = kept.response()
    assert completion["id"] == "chatcmpl-s" and completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"]["content"] == "Echo: hi"
    assert completion["choices"][0]["finish_reason"] == "stop" and completion["usage"]["total_tokens"] == 5
    assert not hasattr(plain, "response")  # an unstored stream assembles nothing


def test_a_kept_stream_whose_completion_could_not_be_stored_ends_in_an_error_not_done():
    kept = KeptChatStreamTranslator(False, {"store": True})
    out = kept.unkept(kept.finish(), {"message": "storage away", "code": "state_unavailable"})
    assert out[0].startswith(b'data: {"error"') and b'"state_unavailable"' in out[0]  # the error before any end


# ---- the /v1/chat/completions/{id} family, on a real local store -----------------------------------------

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "metadata": {"run": "1"}}


def completion(cid: str) -> dict:
    return {"id": cid, "object": "chat.completion", "model": "gpt-4o", "choices": []}


@pytest.fixture
async def chats(tmp_path) -> ChatStore:
    base = ResponseStore(tmp_path / "responses.sqlite3")
    store = endpoint.chats_of(lambda: base)()
    for n, cid in enumerate(("chatcmpl-a", "chatcmpl-b")):
        # created now: anything past 30 days would be expired by the write itself
        await store.put(row_of(BODY, completion(cid), time.time() + n, "alice"))
    return store


async def answered(store: ChatStore, method: str, rest: str, query: dict | None = None, body: dict | None = None,
                   owner: str = "alice") -> tuple[int, dict]:
    resp = await endpoint.stored(store, method, rest, query or {}, body or {}, owner)
    return resp.status_code, json.loads(resp.content)


async def test_a_stored_completion_is_shown_to_its_owner_only(chats):
    assert await answered(chats, "GET", "chatcmpl-a") == (200, {**completion("chatcmpl-a"), "metadata": {"run": "1"}})
    with pytest.raises(GatewayError) as e:
        await answered(chats, "GET", "chatcmpl-a", owner="bob")
    assert (e.value.status, e.value.code, e.value.param) == (404, "not_found", "completion_id")


async def test_the_list_is_oldest_first_and_filtered(chats):
    status, page = await answered(chats, "GET", "")
    assert status == 200 and [c["id"] for c in page["data"]] == ["chatcmpl-a", "chatcmpl-b"]
    _, none = await answered(chats, "GET", "", {"metadata[run]": "2"})
    assert none["data"] == [] and none["has_more"] is False


async def test_an_update_changes_the_metadata(chats):
    status, updated = await answered(chats, "POST", "chatcmpl-a", body={"metadata": {"run": "9"}})
    assert status == 200 and updated["metadata"] == {"run": "9"}
    assert (await answered(chats, "GET", "chatcmpl-a"))[1]["metadata"] == {"run": "9"}


async def test_a_delete_says_deleted_once(chats):
    assert await answered(chats, "DELETE", "chatcmpl-b") == (200, {"object": "chat.completion.deleted",
                                                                  "id": "chatcmpl-b", "deleted": True})
    with pytest.raises(GatewayError):
        await answered(chats, "DELETE", "chatcmpl-b")


async def test_the_messages_are_paged_with_their_ids(chats):
    status, page = await answered(chats, "GET", "chatcmpl-a/messages")
    assert status == 200 and [m["id"] for m in page["data"]] == ["chatcmpl-a-0"]


async def test_an_unknown_action_is_an_unknown_url(chats):
    with pytest.raises(GatewayError) as e:
        await answered(chats, "GET", "chatcmpl-a/other")
    assert (e.value.status, e.value.code) == (404, "unknown_url")


def test_a_store_true_stream_gets_the_keeping_translator_and_others_the_plain_one():
    ep = endpoint.chat_endpoint(lambda: None)  # no store asked for by either translator
    kept = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://x"), body={"store": True})
    plain = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://x"), body={"store": False})
    assert type(ep.stream_translator(kept)) is KeptChatStreamTranslator
    assert type(ep.stream_translator(plain)) is ChatStreamTranslator
