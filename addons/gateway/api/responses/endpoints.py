"""/v1/responses and /v1/responses/compact: the Responses dialect's endpoints, wired from its pure
translation modules and the gateway's stored responses (stores/responses.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING

from ...cache.diagnosis import Diagnoser
from ...errors import GatewayError
from ...exchange import RetryReason, note
from ...interfaces import Answered, ChunkSource, Endpoint, StreamTranslator
from ...turn import outcome
from ..conversation import keyed
from . import background, diagnostics, native, native_answer
from .history import history_items, input_items, kept_inputs
from .items import new_id
from .output import chat_to_response, completion_time, response_object, usage_to_responses
from .request import Translation, check_request, limit_input, require_model, translate
from .state import overflow_failure, state
from ...stores.responses import ResponseStore, previous_not_found
from .stream import ResponsesStreamTranslator
from .stream_parts import sse_event

if TYPE_CHECKING:
    from ...exchange import Exchange
    from ...turn.background import BackgroundRuns
    from ...turn.whole_answer import OpenUpstream

# Items a translation walks (input and continued history) from which it runs in a worker thread: a few µs each,
# so the event loop would stall beyond a millisecond or two above it. A stored conversation is read there too.
OFF_LOOP_ITEMS = 256


def responses_endpoint(store: Callable[[], ResponseStore], runs: Callable[[], BackgroundRuns] | None = None,
                       diagnoser: Diagnoser | None = None) -> Endpoint[Exchange]:
    """/v1/responses: the request translated with the gateway's stored responses (previous_response_id,
    item_reference) and sealed content (reasoning, compaction); what Qwen is offered under each function
    name is kept in the exchange's state (state.py) for the way back. `background: true` is answered at once and run by
    `runs` (turn/background.py; background.py starts each). `diagnoser`: the cache doctor's memory, for
    `prompt_cache_options.comparison_response_id` (diagnostics.py; none: not answered)."""

    def translated(body: dict, ex: Exchange, history: list[dict] | None) -> Translation:
        """The request checked and translated, with the conversation it continues: a WebSocket's own recent
        response (`history`), else the store's (what the request's own key stored, and nobody else's)."""
        check_request(body)
        if body.get("background") is True:
            if runs is None:
                raise GatewayError(400, "Background responses are not available here.", param="background",
                                   code="unsupported_value")
            background.check(body)
        st, owner = store(), ex.key.name
        cont = {"history": history} if history is not None else st.continuation(body, owner)
        chain = cont.pop("native", None)
        state(ex).chain = chain if isinstance(chain, dict) else None
        return translate(body, **cont, notes=ex.notes, open_sealed=st.sealer.open,
                         lookup=lambda i: st.item(i, owner), warm_up=state(ex).warm_up)

    async def ready(body: dict, ex: Exchange) -> None:
        """Before the upstream call: the stored state the request refers to (prepare), then, for a large
        request, its translation in a worker thread (the event loop serves others meanwhile)."""
        limit_input(body)  # refused before anything is walked
        if state(ex).evicted:  # a WebSocket's failed continuation evicted it (socket_messages.py)
            raise previous_not_found(str(body.get("previous_response_id")))
        await store().prepare(body, ex.key.name, stores=True)
        if large(body, state(ex).history):
            state(ex).translation = await asyncio.to_thread(translated, body, ex, state(ex).history)

    def to_chat(body: dict, ex: Exchange) -> dict:
        st = state(ex)
        t, st.translation = st.translation or translated(body, ex, st.history), None
        st.response_id = new_id("resp")
        if diagnoser is not None:  # any response may be named by a later request: each one kept under its id
            ask = ex.cache_ask = diagnostics.asked(body)
            ask.answer_id = st.response_id
            st.diagnose = diagnostics.diagnose(diagnoser, ex, st.response_id) if ask.compare else None
        if body.get("store") is not False:  # stored before the stream's final events go out
            outcome.keep_before_end(ex)
        st.tools = t.tools
        st.items = t.items
        st.history_messages = t.history_messages
        if body.get("truncation") == "auto":  # the guard and the retry policy drop the oldest items to fit
            ex.truncate_oldest = True
        if t.compaction:
            st.compaction = True
            ex.notes.append("compaction: the conversation summarised by one upstream call")
        return t.chat

    def from_chat(chat: dict, ex: Exchange) -> dict:
        st = state(ex)
        compaction = st.compaction
        response = chat_to_response(chat, answered(ex), response_id=st.response_id, created_at=ex.created,
                                    tools=st.tools, seal=store().sealer.seal, compaction=compaction)
        message = ((chat.get("choices") or [{}])[0].get("message") or {})
        if compaction:
            st.summary = str(message.get("content") or "").strip()
        st.reasoning = {o["id"]: str(message.get("reasoning_content") or "")
                        for o in response["output"] if o["type"] == "reasoning"}
        if st.diagnose is not None and (said := st.diagnose(chat.get("usage"))) is not None:
            response["prompt_cache_diagnostics"] = said
        return response

    def translator(ex: Exchange, encode=sse_event) -> ResponsesStreamTranslator:
        return ResponsesStreamTranslator(answered(ex), response_id=state(ex).response_id,
                                         created_at=ex.created, tools=state(ex).tools, seal=store().sealer.seal,
                                         compaction=state(ex).compaction,
                                         encode=diagnostics.encoder(encode, state(ex).diagnose))

    def finished(ex: Exchange, response: dict | None) -> None:
        body = ex.body or {}
        if response is None or body.get("store") is False:
            return
        # what is kept is made by the store's worker thread, from the request's and the answer's parts
        write = store().put(response, history_of(ex, response), partial(kept_inputs, body), owner=ex.key.name)
        if write is not None:  # the store's write: the answer waits for it (addon.response, turn.keep.keep_early)
            outcome.keeping(ex, write)

    def history_of(ex: Exchange, response: dict) -> Callable[[], dict]:
        st = state(ex)
        summary, reasoning = st.summary, st.reasoning
        if (streamed := outcome.stream_translator(ex)) is not None:  # a stream: its translator kept them
            summary = summary if summary is not None else getattr(streamed, "summary", None)
            reasoning = reasoning if reasoning is not None else getattr(streamed, "reasoning", None)
        items, seal, compaction = st.items, store().sealer.seal, st.compaction
        chain = chain_kept(ex)
        return lambda: {"items": history_items(items, response, seal, summary=summary if compaction else None,
                                               reasoning=reasoning), **chain}

    def own_body(body: dict, ex: Exchange) -> dict | None:
        """Model Studio's own Responses body (native.py), or None: this request is translated."""
        st, cred = state(ex), ex.attempt.cred
        chat = ex.chat_body
        if st.socket or st.compaction or cred is None or chat is None:
            return None
        reason = native.translated_only(chat, body, model=ex.attempt.model)
        if reason is not None:
            note(ex.notes, f"translated, not sent to Qwen's own Responses API: {reason}")
            return None
        # Qwen no longer held it once (a STALE refusal, sent again): translated this time
        stale = any(r.reason is RetryReason.NEW_CHAT for r in ex.attempt.retries)
        previous = None if stale else native.chain_of(st.chain, account=cred.account,
                                                      history_messages=st.history_messages, now=time.time())
        if previous is None and not native.opening(chat, st.history_messages):
            note(ex.notes, "translated, not sent to Qwen's own Responses API: it does not hold this conversation")
            return None
        out = native.own_body(chat, body, previous=previous, history_messages=st.history_messages)
        if "web_search_options" in chat:
            note(ex.notes, f"web search dropped: {ex.attempt.model} does not search")  # as the chat path says it
        note(ex.notes, "continued on Qwen's own Responses API (its previous_response_id)" if "previous_response_id"
             in out else "sent to Qwen's own Responses API (qwen_responses_native)")
        return out

    def from_own(data: dict, ex: Exchange) -> Answered:
        state(ex).upstream_id = data.get("id") if isinstance(data.get("id"), str) else None
        chat = native_answer.chat_answer(data, model=ex.answered_as)
        return from_chat(chat, ex), chat["usage"]

    def own_stream(ex: Exchange) -> tuple[ChunkSource, StreamTranslator]:
        source = state(ex).source = native_answer.EventSource(ex.answered_as)
        return source, translator(ex)

    def chain_kept(ex: Exchange) -> dict:
        """Where Model Studio's own Responses API holds this conversation now ({} when it did not answer, or
        did not store it): what the next turn continues there."""
        st, cred, body = state(ex), ex.attempt.cred, ex.body or {}
        upstream_id = st.upstream_id or getattr(st.source, "upstream_id", None)
        if not ex.attempt.leg.passthrough or not upstream_id or cred is None or ex.chat_body is None or \
                (ex.attempt.body or {}).get("store") is False:
            return {}
        return {"native": {"account": cred.account, "id": upstream_id, "at": time.time(),
                           "messages": native.held_messages(ex.chat_body, body)}}

    def stream_failure(ex: Exchange) -> bytes | None:
        err = ex.result.error
        failed = overflow_failure(ex, err.code, err.message, partial(translator, ex)) if err is not None else None
        return b"".join(failed) if failed is not None else None

    async def fetch(ex: Exchange, open_upstream: OpenUpstream) -> Answered | None:
        if state(ex).warm_up:  # the connection made ready: its response, with no output (the socket sends its events)
            ex.notes.append("warm-up (generate: false): nothing sent to Qwen")
            return dict(response_object(ex.body or {}, response_id=state(ex).response_id, created_at=ex.created,
                                        status="completed", output=[],
                                        usage={"prompt_tokens": 0, "completion_tokens": 0},
                                        completed_at=completion_time("completed"))), None
        if runs is None or (ex.body or {}).get("background") is not True:
            return None  # one ordinary call
        return await background.start(runs(), store(), ex), None

    return Endpoint(name="responses", to_chat=keyed(to_chat), from_chat=from_chat, stream_translator=translator,
                    finished=finished, stream_failure=stream_failure, fetch=fetch, prepare=ready,
                    own_body=own_body, from_own=from_own, own_stream=own_stream)


def answered(ex: Exchange) -> dict:
    """The request a Response echoes, naming the model that answered when a fallback group's did (qwen_fallbacks)."""
    body = ex.body or {}
    return {**body, "model": ex.attempt.fallback} if ex.attempt.fallback else body


def large(body: dict, history: list | None) -> bool:
    """A request whose translation walks more than OFF_LOOP_ITEMS items, or reads a stored conversation or an
    item by its id (from a stored response's input, read whole)."""
    items = body.get("input")
    return (isinstance(items, list) and (len(items) > OFF_LOOP_ITEMS or any(
        i.__class__ is dict and i.get("type") == "item_reference" for i in items))
        or len(history or ()) > OFF_LOOP_ITEMS or history is None and isinstance(body.get("previous_response_id"), str))


def compact_endpoint(store: Callable[[], ResponseStore]) -> Endpoint[Exchange]:
    """/v1/responses/compact: one summarisation call; the answer keeps the user's messages and adds one
    sealed `compaction` item (what a later request carries back instead of the conversation)."""

    def to_chat(body: dict, ex: Exchange) -> dict:
        require_model(body)
        items: list = body["input"] if isinstance(body.get("input"), list) else (
            [] if body.get("input") is None else [body.get("input")])
        request = {**body, "stream": False, "input": [*items, {"type": "compaction_trigger"}]}
        if isinstance(body.get("input"), str):
            request["input"] = [{"type": "message", "role": "user", "content": body["input"]},
                                {"type": "compaction_trigger"}]
        st, owner = store(), ex.key.name
        return translate(request, **st.continuation(body, owner), notes=ex.notes, open_sealed=st.sealer.open,
                         lookup=lambda i: st.item(i, owner)).chat

    def from_chat(chat: dict, ex: Exchange) -> dict:
        body = ex.body or {}
        response = chat_to_response(chat, body, response_id=new_id("resp"), created_at=ex.created,
                                    seal=store().sealer.seal, compaction=True)
        kept = [i for i in input_items(body) if i.get("type") == "message" and i.get("role") == "user"]
        return {"id": response["id"], "object": "response.compaction", "output": kept + response["output"],
                "created_at": ex.created, "usage": response.get("usage") or usage_to_responses({})}

    return Endpoint(name="responses.compact", to_chat=keyed(to_chat), from_chat=from_chat,
                    stream_translator=lambda ex: None, prepare=prepare(store, stores=False),
                    streams=lambda body: False)  # one summarisation call, answered whole


def prepare(store: Callable[[], ResponseStore], *, stores: bool) -> Callable[[dict, Exchange], Awaitable[None]]:
    """Before the upstream call: the stored responses and items the body refers to (the request's key's,
    fetched from a shared database when not here) and, for an answer that will be stored, a store that can
    take it."""

    async def ready(body: dict, ex: Exchange) -> None:
        await store().prepare(body, ex.key.name, stores=stores)

    return ready
