"""/v1/chat/completions with OpenAI's stored completions: `store: true` keeps the completion the client got
(a stream's assembled from the chunks it was sent) before the answer's end goes out, and the
/v1/chat/completions/{id} family answers from what was kept. Without `store: true` the endpoint is the chat
dialect's own (api/chat.py): no storage touched, no extra work per chunk."""

from __future__ import annotations

import dataclasses
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from mitmproxy import http

from ...turn import outcome
from ...turn.assembler import ChunkAssembler
from ...settings.config import Config
from ...errors import GatewayError
from ...local_answers import LocalRoute, json_response, unknown_url
from ...interfaces import ChatChunk, Endpoint
from ..chat import CHAT, ChatStreamTranslator, wants_usage
from ..chat_answer import CallRewriter
from ..responses.retrieve import item_page
from ...stores.responses import ResponseStore
from ...stores.responses_pg import SharedResponseStore
from .records import check_metadata, invalid, list_filter, row_of
from ...stores.stored_chat import ChatStore
from ...stores.stored_chat_pg import SharedChatStore

if TYPE_CHECKING:
    from ...exchange import Exchange

PATH = "/chat/completions"


_stores: weakref.WeakKeyDictionary[ResponseStore, ChatStore] = weakref.WeakKeyDictionary()


def chats_of(store: Callable[[], ResponseStore]) -> Callable[[], ChatStore]:
    """The stored chat completions of the gateway's current state store (the same database, shared or local):
    one ChatStore per state store, whoever asks (it counts its rows)."""

    def chats() -> ChatStore:
        base = store()
        found = _stores.get(base)
        if found is None:
            found = _stores[base] = SharedChatStore(base) if isinstance(base, SharedResponseStore) else ChatStore(base)
        return found

    return chats


class _Keeping:
    """The chat translator's tool-call rewriter, also handing every chunk the client gets to an assembler."""

    def __init__(self, calls: CallRewriter, assembler: ChunkAssembler) -> None:
        self.calls, self.assembler = calls, assembler

    def rewrite(self, chunk: ChatChunk) -> ChatChunk | None:
        out = self.calls.rewrite(chunk)
        if out is not None:
            self.assembler.feed(out)
        return out


class KeptChatStreamTranslator(ChatStreamTranslator):
    """A `store: true` stream: the client's chunks as ever, and `response()`, the completion they make (what
    turn.keep.keep_early keeps before the parked [DONE] goes out)."""

    def __init__(self, include_usage: bool, body: dict) -> None:
        super().__init__(include_usage, body)
        self.assembler = ChunkAssembler()
        self.calls = _Keeping(self.calls, self.assembler)  # type: ignore[assignment]

    def response(self) -> dict:
        return self.assembler.completion()

    def unkept(self, held: list[bytes], error: dict) -> list[bytes]:
        """The completion could not be stored: the stream ends in an error event (then [DONE], as every failed chat
        stream), never the completion's end."""
        return self.fail(error)


def chat_endpoint(chats: Callable[[], ChatStore]) -> Endpoint[Exchange]:
    """The chat endpoint, keeping `store: true` completions in `chats()`."""

    def to_chat(body: dict, ex: Exchange) -> dict:
        chat = CHAT.to_chat(body, ex)  # the schema first: a body it refuses is refused naming its own field
        if body.get("metadata") is not None:
            check_metadata(body["metadata"])
        if body.get("store") is True:  # stored before the stream's [DONE] goes out
            outcome.keep_before_end(ex)
        return chat

    def translator(ex: Exchange) -> ChatStreamTranslator:
        body = ex.body or {}
        if body.get("store") is True:
            return KeptChatStreamTranslator(wants_usage(body), body)
        return ChatStreamTranslator(wants_usage(body), body)

    def finished(ex: Exchange, completion: dict | None) -> None:
        body = ex.body or {}
        if body.get("store") is not True or not isinstance(completion, dict) or "id" not in completion:
            return
        # the write: the answer waits for it (Settlement.durable, turn.keep.keep_early); refused, a 503 or an error event
        outcome.keeping(ex, chats().put(row_of(body, completion, time.time(), ex.key.name)))

    async def prepare(body: dict, ex: Exchange) -> None:
        if body.get("store") is True:  # refused now (503 state_unavailable), before Qwen answers for nothing
            await chats().check()

    return dataclasses.replace(CHAT, to_chat=to_chat, stream_translator=translator, finished=finished,
                               prepare=prepare)


def stored_chat(chats: Callable[[], ChatStore]) -> LocalRoute:
    """GET /v1/chat/completions (the list), GET/POST/DELETE /v1/chat/completions/{id}, GET …/{id}/messages:
    the completions the request's own key stored (another key's are not found, as an id never stored)."""

    async def answer(ex: Exchange, flow: http.HTTPFlow, config: Config) -> http.Response:
        sub = ex.client.path[3:] if ex.client.path.startswith("/v1/") else ex.client.path
        return await stored(chats(), ex.client.method, sub[len(PATH):].strip("/"), flow.request.query, ex.body or {},
                            ex.key.name)

    return answer


async def stored(store: ChatStore, method: str, rest: str, query, body: dict, owner: str) -> http.Response:
    cid, _, action = rest.partition("/")
    if not cid:
        return json_response(200, await listed(store, query, owner))
    if (method, action) not in (("GET", ""), ("POST", ""), ("DELETE", ""), ("GET", "messages")):
        raise unknown_url(method, f"/v1{PATH}/{rest}")
    if method == "POST":
        found = await store.update(cid, update_metadata(body), owner)
    elif method == "DELETE":
        found = await store.delete(cid, owner)
        if found:
            return json_response(200, {"object": "chat.completion.deleted", "id": cid, "deleted": True})
    elif action == "messages":
        messages = await store.messages(cid, owner)
        if messages is not None:
            return json_response(200, item_page(messages, query, default_order="asc"))
        found = False
    else:
        found = True
    completion = await store.get(cid, owner) if found else None
    if completion is None:
        raise GatewayError(404, f"No chat completion found with id '{cid}'. Only completions created with "
                                "store: true are kept.", code="not_found", param="completion_id")
    return json_response(200, completion)


def update_metadata(body: dict) -> dict[str, str]:
    """POST /v1/chat/completions/{id}: only `metadata` may be changed."""
    for key in body:
        if key != "metadata":
            raise invalid(f"Unrecognized request argument supplied: {key}. Only 'metadata' can be updated.", key,
                          "unknown_parameter")
    if "metadata" not in body:
        raise invalid("Missing required parameter: 'metadata'.", "metadata", "missing_required_parameter")
    return check_metadata(body["metadata"])


async def listed(store: ChatStore, query, owner: str) -> dict:
    """One page of the owner's stored completions that match the query (oldest first unless `order=desc`)."""
    wanted = list_filter(query)
    matching = [{"id": cid} for cid, model, metadata in await store.index(owner) if wanted.matches(model, metadata)]
    page = item_page(matching, query, default_order="asc")
    found = await store.completions([i["id"] for i in page["data"]], owner) if page["data"] else {}
    page["data"] = [found[i["id"]] for i in page["data"] if i["id"] in found]  # one deleted meanwhile: left out
    return page
