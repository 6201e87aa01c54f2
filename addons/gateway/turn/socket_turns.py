"""One message on a gateway WebSocket (socket.py) run as its own exchange by the gateway's turn, exactly as a
streamed POST is — observers, context guard, engine, stream translation, pool — through `SocketTurn`, which sends
each event as one JSON text frame. A turn sent on a `stream_id` lane (socket_lanes.py) has every event of its own
echo that `stream_id`.

What a message means is its dialect's (`SocketDialect`, given by the wiring: the Responses API's is
api/responses/socket_messages.py): which messages run a turn and with what body, how the turn's events and
refusals are encoded, what a connection remembers between its turns. The transport here moves the frames and
runs the turns."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import wsproto.events as ws_events
from wsproto import WSConnection
from wsproto.connection import ConnectionState

from ..errors import GatewayError
from ..exchange import ClientRequest, Exchange, KeyUse
from . import Cancelled, TurnRunner

if TYPE_CHECKING:
    from mitmproxy import http

    from ..interfaces import Endpoint, StreamTranslator

Encode = Callable[[dict], bytes]  # one event -> its text frame's bytes


def _encode(payload: dict) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def lane_encoder(lane: str | None) -> Encode:
    """How a lane's events are encoded: on a `stream_id` lane each one echoes it (the spec)."""
    if lane is None:
        return _encode
    return lambda payload: _encode({**payload, "stream_id": lane})


class DialectTurn(Protocol):
    """One message's turn as its dialect runs it: the request's body, and what the dialect does at each step."""

    body: dict  # the request the turn runs ("stream": true)

    def received(self, ex: Exchange) -> None:
        """The exchange has its body: the dialect's own state on it (what it continues from, a warm-up)."""
        ...

    def translator(self, ex: Exchange) -> StreamTranslator:
        """The stream's events in the dialect, each encoded with the turn's `Encode`."""
        ...

    def whole(self, ex: Exchange, answer: http.Response) -> list[bytes] | None:
        """A whole answer as the turn's events (None: not something this turn can carry as events)."""
        ...

    def refused(self, ex: Exchange, err: GatewayError) -> list[bytes] | None:
        """A refusal as the dialect's own failure events (None: the dialect's error event)."""
        ...

    def ended(self, ex: Exchange, final: dict | None) -> None:
        """The turn is over: what the connection remembers of it."""
        ...


class SocketDialect(Protocol):
    """A client dialect's part of the WebSocket transport (the Responses API's: api/responses/socket_messages.py)."""

    route: str  # the exchange's route
    endpoint: Endpoint[Exchange]  # the dialect's endpoint, which each turn runs through
    shown: str  # what the upgrade's exchange notes: "WebSocket transport (…)"

    def connected(self) -> Any:
        """What one connection keeps between its turns (handed back to `turn`)."""
        ...

    def turn(self, message: object, memory: Any, encode: Encode) -> DialectTurn | None:
        """The turn a client's message (parsed JSON; None: not JSON) asks for; None: it needs no answer. Raises the
        GatewayError the client is told (its `error_event`)."""
        ...

    def error_event(self, err: GatewayError) -> dict:
        """A refusal as the dialect's error event."""
        ...


@dataclass
class SocketSession:
    """One client's WebSocket: its flow, the upgrade's exchange, its connection and what its dialect remembers."""

    flow: http.HTTPFlow
    upgrade: Exchange
    ws: WSConnection
    writer: asyncio.StreamWriter
    memory: Any = None  # the dialect's (SocketDialect.connected)
    turns: int = 0

    def send(self, data: bytes) -> None:
        if self.ws.state is ConnectionState.OPEN and not self.writer.is_closing():
            self.writer.write(self.ws.send(ws_events.TextMessage(data=data.decode("utf-8", "replace"))))


class SocketTurns:
    """The turns of every WebSocket, each run by the gateway's turn (`runner`, turn/runner.py) as a streamed POST
    is, through a `SocketTurn` transport; what a message means is the `dialect`'s."""

    def __init__(self, runner: TurnRunner, dialect: SocketDialect) -> None:
        self.runner = runner
        self.dialect = dialect

    def refusal(self, err: GatewayError, lane: str | None = None) -> bytes:
        """A refusal as the dialect's error event, echoing the lane's `stream_id`."""
        return lane_encoder(lane)(self.dialect.error_event(err))

    async def message(self, session: SocketSession, message: object, size: int, lane: str | None = None) -> None:
        """One message of the client's (parsed; None: not JSON), on its lane: run as a turn if it asks for one."""
        encode = lane_encoder(lane)  # every event of the turn, its error events too
        try:
            turn = self.dialect.turn(message, session.memory, encode)
        except GatewayError as err:
            session.send(encode(self.dialect.error_event(err)))
            return
        if turn is not None:
            await self.run(session, turn, size, encode)

    async def run(self, session: SocketSession, turn: DialectTurn, size: int, encode: Encode) -> None:
        up, flow = session.upgrade, session.flow
        ex = Exchange(ClientRequest("POST", up.client.path, up.client.url, up.client.key_hint, size,
                                    user_agent=up.client.user_agent),
                      route=self.dialect.route, endpoint=self.dialect.endpoint, stream=True,
                      key=KeyUse(up.key.name, up.key.record, usd_budget=up.key.usd_budget))  # each turn limited
        ex.notes.append("over WebSocket")
        session.turns += 1
        self.runner.received(ex, turn.body, flow)
        turn.received(ex)
        await self.runner.run(ex, SocketTurn(session, turn, encode, self.dialect.error_event))


class SocketTurn:
    """One turn's transport on a WebSocket (turn.Transport): each event one JSON text frame; a refusal the dialect's
    error event (or its own failure events); what the connection remembers told to the dialect at the end."""

    capture = 0
    keeps = False
    ends_record = True  # no mitmproxy hook ends a WebSocket turn
    client = None

    def __init__(self, session: SocketSession, turn: DialectTurn, encode: Encode,
                 error_event: Callable[[GatewayError], dict]) -> None:
        self.session = session
        self.turn = turn
        self.encode = encode
        self.error_event = error_event

    def translator(self, ex: Exchange) -> StreamTranslator:
        return self.turn.translator(ex)

    async def begin(self, ex: Exchange) -> None:
        pass

    async def send(self, outs: list[bytes]) -> None:
        for out in outs:
            self.session.send(out)
        await self.session.writer.drain()

    async def whole(self, ex: Exchange, answer: http.Response) -> bool:
        events = self.turn.whole(ex, answer)
        if events is None:
            return False  # not something a WebSocket turn carries as events: the turn ends it (refuse, below)
        for event in events:
            self.session.send(event)
        return True

    async def refuse(self, ex: Exchange, err: GatewayError) -> bool:
        events = self.turn.refused(ex, err)
        if events is not None:
            await self.send(events)
            return True
        self.session.send(self.encode(self.error_event(err)))
        return False

    def cancelled(self, ex: Exchange) -> Cancelled:
        return Cancelled(True, "the client closed the WebSocket")

    def ended(self, ex: Exchange, final: dict | None) -> None:
        self.turn.ended(ex, final)
