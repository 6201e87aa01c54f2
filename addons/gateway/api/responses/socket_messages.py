"""The Responses API's part of the gateway's WebSocket (turn/socket.py, turn/socket_turns.py: the transport), as
Codex speaks it: a `{"type": "response.create", …}` message is a request body run as a streamed POST
/v1/responses is; acknowledgements need nothing; every other message is refused with the spec's `error` event.
`"generate": false` only warms the connection up (the endpoint's own answer, no call to Qwen). A connection
keeps its own recent responses (`ConnectionHistory`) for `previous_response_id`, stored or not; a continuation
turn that fails evicts its previous_response_id from the connection, as the spec requires."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...errors import GatewayError
from ...exchange import Exchange
from ...interfaces import Endpoint
from ...turn import outcome
from ...turn.socket_turns import Encode
from .diagnostics import encoder as with_diagnostics
from .history import history_items
from .state import overflow_failure, state
from ...stores.responses import ResponseStore
from .stream import ResponsesStreamTranslator

if TYPE_CHECKING:
    from mitmproxy import http

KEEP_RESPONSES = 8  # a connection's own recent responses, for previous_response_id
KEEP_EVICTED = 64  # responses a failed continuation evicted, refused on the connection from then on


@dataclass
class ConnectionHistory:
    """One connection's recent responses (id -> history items), and those a failed continuation evicted."""

    history: OrderedDict[str, list[dict]] = field(default_factory=OrderedDict)
    evicted: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def remember(self, response_id: str, items: list[dict]) -> None:
        self.history[response_id] = items
        while len(self.history) > KEEP_RESPONSES:
            self.history.popitem(last=False)

    def evict(self, response_id: str) -> None:
        """A continuation from `response_id` failed: the connection no longer continues from it (the spec: a
        failed turn evicts its previous_response_id, and the next turn on it fails), stored or not."""
        self.history.pop(response_id, None)
        self.evicted[response_id] = None
        while len(self.evicted) > KEEP_EVICTED:
            self.evicted.popitem(last=False)


class ResponsesSocket:
    """The Responses WebSocket's dialect (turn.socket_turns.SocketDialect): the Responses `endpoint` each turn runs
    through, its stored Responses (`store`: the sealer of history items)."""

    route = "responses"
    shown = "Responses API"

    def __init__(self, endpoint: Endpoint[Exchange], store: Callable[[], ResponseStore]) -> None:
        self.endpoint = endpoint
        self.store = store

    def connected(self) -> ConnectionHistory:
        return ConnectionHistory()

    def turn(self, message: object, memory: ConnectionHistory, encode: Encode) -> ResponseCreate | None:
        """A `response.create` is run as a turn; acknowledgements need nothing."""
        kind = message.get("type") if isinstance(message, dict) else None
        if isinstance(message, dict) and kind == "response.create":  # the envelope's fields are not the request's
            body = {k: v for k, v in message.items() if k not in ("type", "stream_id")}
            return ResponseCreate(body, memory, self.store, encode)
        if kind not in ("response.processed", "response.cancel"):  # nothing runs in the background
            raise GatewayError(400, f"Unknown WebSocket message type {kind!r}: send response.create.",
                               code="invalid_message", param="type")
        return None

    def error_event(self, err: GatewayError) -> dict:
        return _error_event(err)


class ResponseCreate:
    """One `response.create`'s turn (turn.socket_turns.DialectTurn): the events of a streamed POST /v1/responses;
    a context overflow the `response.failed` Codex acts on; the connection's history kept from the turn's response,
    or the continued one evicted when the turn failed (the spec)."""

    def __init__(self, body: dict, memory: ConnectionHistory, store: Callable[[], ResponseStore],
                 encode: Encode) -> None:
        self.generate = body.pop("generate", True) is not False  # the socket's field, not the request's
        # a turn streams its events; a warm-up is one object, no upstream stream (the transport sends its events)
        body["stream"] = self.generate
        self.body = body
        self.memory = memory
        self.store = store
        self.encode = encode

    def received(self, ex: Exchange) -> None:
        st = state(ex)
        st.socket = True  # the WebSocket stays the gateway's: never Model Studio's own Responses API
        prev = self.body.get("previous_response_id")
        if isinstance(prev, str):  # what the endpoint continues from: the connection's own, or refused if evicted
            if prev in self.memory.evicted:
                st.evicted = True
            elif prev in self.memory.history:
                st.history = self.memory.history[prev]
        if not self.generate:  # a warm-up: a local answer (the endpoint's own), run and ended as every turn is
            st.warm_up = True

    def translator(self, ex: Exchange) -> ResponsesStreamTranslator:
        st = state(ex)
        return ResponsesStreamTranslator(ex.body or {}, response_id=st.response_id, created_at=ex.created,
                                         tools=st.tools, seal=self.store().sealer.seal, compaction=st.compaction,
                                         encode=with_diagnostics(self.encode, st.diagnose))

    def whole(self, ex: Exchange, answer: http.Response) -> list[bytes] | None:
        if state(ex).warm_up and answer.status_code == 200:
            return self._warmed_up(ex, json.loads(answer.content or b"{}"))
        return None

    def refused(self, ex: Exchange, err: GatewayError) -> list[bytes] | None:
        return overflow_failure(ex, err.code, err.message, lambda: self.translator(ex))

    def _warmed_up(self, ex: Exchange, response: dict) -> list[bytes]:
        """A warm-up's response as a turn's events (created, in progress, completed), and kept for the next
        `previous_response_id`: the conversation so far and the warm-up's own input."""
        events = (("response.created", "in_progress"), ("response.in_progress", "in_progress"),
                  ("response.completed", "completed"))
        sent = []
        for seq, (kind, status) in enumerate(events):
            shown = response if status == "completed" else {**response, "status": status, "usage": None,
                                                             "completed_at": None}
            sent.append(self.encode({"type": kind, "response": shown, "sequence_number": seq}))
        self.memory.remember(response["id"], history_items(state(ex).items, response))
        return sent

    def ended(self, ex: Exchange, final: dict | None) -> None:
        prev = (ex.body or {}).get("previous_response_id")
        warmed_up = state(ex).warm_up and ex.result.error is None  # kept when its events went out (_warmed_up)
        if not warmed_up and not self._remember(ex, final) and isinstance(prev, str):
            self.memory.evict(prev)

    def _remember(self, ex: Exchange, final: dict | None) -> bool:
        """The turn's response, for this connection's next `previous_response_id`: whether there was one to keep
        (none when the stream failed, or the response could not be stored)."""
        translator = outcome.stream_translator(ex)
        if final is None or ex.turn.unkept or not isinstance(translator, ResponsesStreamTranslator):
            return False
        summary = translator.summary if state(ex).compaction else None
        self.memory.remember(final["id"], history_items(state(ex).items, final,
                                                        self.store().sealer.seal, summary=summary,
                                                        reasoning=translator.reasoning))
        return True


def _error_event(e: GatewayError) -> dict:
    """An `error` event as the Responses WebSocket sends one: the spec's fields (code, message, param) and
    the HTTP status with the error object, which Codex maps to what it does for that status."""
    return {"type": "error", "status": e.status, "code": e.code, "message": e.message, "param": e.param,
            "error": {"type": e.type, "code": e.code, "message": e.message, "param": e.param},
            **({"headers": e.headers} if e.headers else {}), "sequence_number": 0}
