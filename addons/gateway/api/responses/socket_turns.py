"""One `response.create` on a Responses WebSocket (socket.py): run by the gateway's turn as its own exchange,
exactly as a POST /v1/responses with `"stream": true` is — observers, context guard, engine, stream translation,
pool, stored response — through `SocketTurn`, which sends each event as one JSON text frame. A continuation
turn that fails evicts its previous_response_id from the connection (`SocketSession.evict`), as the spec requires.
A turn sent on a `stream_id` lane (socket_lanes.py) has every event of its own echo that `stream_id`."""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import TYPE_CHECKING

import wsproto.events as ws_events
from wsproto import WSConnection
from wsproto.connection import ConnectionState

from ...errors import GatewayError
from ...exchange import ClientRequest, Exchange, KeyUse
from ...interfaces import Endpoint
from ...turn import TurnRunner, outcome
from .diagnostics import encoder as with_diagnostics
from .history import history_items
from .state import state
from ...stores.responses import ResponseStore
from .stream import ResponsesStreamTranslator

if TYPE_CHECKING:
    from mitmproxy import http

KEEP_RESPONSES = 8  # a connection's own recent responses, for previous_response_id
KEEP_EVICTED = 64  # responses a failed continuation evicted, refused on the connection from then on


def _encode(payload: dict) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def lane_encoder(lane: str | None) -> Callable[[dict], bytes]:
    """How a lane's events are encoded: on a `stream_id` lane each one echoes it (the spec)."""
    if lane is None:
        return _encode
    return lambda payload: _encode({**payload, "stream_id": lane})


@dataclass
class SocketSession:
    """One client's WebSocket: its flow, its recent responses (id -> history items)."""

    flow: http.HTTPFlow
    upgrade: Exchange
    ws: WSConnection
    writer: asyncio.StreamWriter
    history: OrderedDict[str, list[dict]] = field(default_factory=OrderedDict)
    evicted: OrderedDict[str, None] = field(default_factory=OrderedDict)
    turns: int = 0

    def send(self, data: bytes) -> None:
        if self.ws.state is ConnectionState.OPEN and not self.writer.is_closing():
            self.writer.write(self.ws.send(ws_events.TextMessage(data=data.decode("utf-8", "replace"))))

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


class SocketTurns:
    """The turns of every WebSocket, each run by the gateway's turn (`runner`, turn/runner.py) as a streamed POST
    /v1/responses is, through a `SocketTurn` transport: the Responses `endpoint`, its stored Responses (`store`:
    the sealer of history items)."""

    def __init__(self, runner: TurnRunner, endpoint: Endpoint[Exchange], store: Callable[[], ResponseStore]) -> None:
        self.runner = runner
        self.endpoint = endpoint
        self.store = store

    async def message(self, session: SocketSession, message: object, size: int, lane: str | None = None) -> None:
        """One message of the client's (parsed; None: not JSON), on its lane: a `response.create` is run as a turn;
        acknowledgements need nothing."""
        kind = message.get("type") if isinstance(message, dict) else None
        if isinstance(message, dict) and kind == "response.create":  # the envelope's fields are not the request's
            await self.run(session, {k: v for k, v in message.items() if k not in ("type", "stream_id")}, size, lane)
        elif kind not in ("response.processed", "response.cancel"):  # nothing runs in the background
            session.send(lane_encoder(lane)(_error_event(GatewayError(
                400, f"Unknown WebSocket message type {kind!r}: send response.create.",
                code="invalid_message", param="type"))))

    async def run(self, session: SocketSession, body: dict, size: int, lane: str | None = None) -> None:
        up, flow = session.upgrade, session.flow
        ex = Exchange(ClientRequest("POST", up.client.path, up.client.url, up.client.key_hint, size,
                                    user_agent=up.client.user_agent),
                      route="responses", endpoint=self.endpoint, stream=True,
                      key=KeyUse(up.key.name, up.key.record, usd_budget=up.key.usd_budget))  # each turn limited
        ex.notes.append("over WebSocket")
        session.turns += 1
        body["stream"] = True
        generate = body.pop("generate", True) is not False  # the socket's field, not the request's
        self.runner.received(ex, body, flow)
        state(ex).socket = True  # the WebSocket stays the gateway's: never Model Studio's own Responses API
        prev = body.get("previous_response_id")
        if isinstance(prev, str):  # what the endpoint continues from: the connection's own, or refused if evicted
            if prev in session.evicted:
                state(ex).evicted = True
            elif prev in session.history:
                state(ex).history = session.history[prev]
        if not generate:  # a warm-up: a local answer (the endpoint's own), run and ended as every turn is
            state(ex).warm_up = True
            ex.stream = False  # one object, no upstream stream: the transport sends it as its events
        await self.runner.run(ex, SocketTurn(session, self.store, lane))


class SocketTurn:
    """One turn's transport on a WebSocket (turn.Transport): each event one JSON text frame; a refusal the
    Responses WebSocket's `error` event (a context overflow the `response.failed` Codex acts on); the connection's
    history kept from the turn's response, or the continued one evicted when the turn failed (the spec)."""

    capture = 0
    keeps = False
    ends_record = True  # no mitmproxy hook ends a WebSocket turn
    client = None

    def __init__(self, session: SocketSession, store: Callable[[], ResponseStore], lane: str | None = None) -> None:
        self.session = session
        self.store = store
        self.encode = lane_encoder(lane)  # every event of the turn, its error events too

    def translator(self, ex: Exchange) -> ResponsesStreamTranslator:
        st = state(ex)
        return ResponsesStreamTranslator(ex.body or {}, response_id=st.response_id, created_at=ex.created,
                                         tools=st.tools, seal=self.store().sealer.seal, compaction=st.compaction,
                                         encode=with_diagnostics(self.encode, st.diagnose))

    async def begin(self, ex: Exchange) -> None:
        pass

    async def send(self, outs: list[bytes]) -> None:
        for out in outs:
            self.session.send(out)
        await self.session.writer.drain()

    async def whole(self, ex: Exchange, answer: http.Response) -> None:
        if state(ex).warm_up and answer.status_code == 200:
            self._warmed_up(ex, json.loads(answer.content or b"{}"))
            return
        # Qwen answered a stream request whole: not something a WebSocket turn can carry as events
        err = GatewayError(502, "Qwen answered with no stream.", code="invalid_upstream_response")
        ex.fail(err.status, err.code, err.message)
        self.session.send(self.encode(_error_event(err)))

    async def refuse(self, ex: Exchange, err: GatewayError) -> None:
        if err.code == "context_length_exceeded" and state(ex).response_id:
            outcome.stream_broken(ex, err.message)
            await self.send(self.translator(ex).fail({"message": err.message, "code": err.code,
                                                      "type": "invalid_request_error"}))
        else:
            self.session.send(self.encode(_error_event(err)))

    def cancelled(self, ex: Exchange) -> None:
        outcome.client_left(ex, "the client closed the WebSocket")

    def _warmed_up(self, ex: Exchange, response: dict) -> None:
        """A warm-up's response as a turn's events (created, in progress, completed), and kept for the next
        `previous_response_id`: the conversation so far and the warm-up's own input."""
        events = (("response.created", "in_progress"), ("response.in_progress", "in_progress"),
                  ("response.completed", "completed"))
        for seq, (kind, status) in enumerate(events):
            shown = response if status == "completed" else {**response, "status": status, "usage": None,
                                                             "completed_at": None}
            self.session.send(self.encode({"type": kind, "response": shown, "sequence_number": seq}))
        self.session.remember(response["id"], history_items(state(ex).items, response))

    def ended(self, ex: Exchange, final: dict | None) -> None:
        prev = (ex.body or {}).get("previous_response_id")
        warmed_up = state(ex).warm_up and ex.result.error is None  # kept when its events went out (_warmed_up)
        if not warmed_up and not self._remember(ex, final) and isinstance(prev, str):
            self.session.evict(prev)
        outcome.ended(ex)

    def _remember(self, ex: Exchange, final: dict | None) -> bool:
        """The turn's response, for this connection's next `previous_response_id`: whether there was one to keep
        (none when the stream failed, or the response could not be stored)."""
        translator = outcome.stream_translator(ex)
        if final is None or ex.turn.unkept or not isinstance(translator, ResponsesStreamTranslator):
            return False
        summary = translator.summary if state(ex).compaction else None
        self.session.remember(final["id"], history_items(state(ex).items, final,
                                                         self.store().sealer.seal, summary=summary,
                                                         reasoning=translator.reasoning))
        return True


def _error_event(e: GatewayError) -> dict:
    """An `error` event as the Responses WebSocket sends one: the spec's fields (code, message, param) and
    the HTTP status with the error object, which Codex maps to what it does for that status."""
    return {"type": "error", "status": e.status, "code": e.code, "message": e.message, "param": e.param,
            "error": {"type": e.type, "code": e.code, "message": e.message, "param": e.param},
            **({"headers": e.headers} if e.headers else {}), "sequence_number": 0}

