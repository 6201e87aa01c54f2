"""The gateway's WebSocket server: a client's upgrade (`GET /v1/responses` with `Upgrade: websocket`, as Codex
opens it) served on the relay, its messages read (bounded: socket_budget.py), each run as a turn on its lane, the
connection closed with the right code. What a message means is its dialect's (socket_turns.SocketDialect, given by
the wiring: the Responses API's is api/responses/socket_messages.py): Codex sends `{"type": "response.create", …}`
text messages and reads the events a stream carries, one JSON text frame each.

mitmproxy 12.2 lets an addon answer the upgrade itself (a 101 set in the `request` hook becomes a WebSocket
flow, and `inject.websocket` reaches the client), but when the client then closes the socket, mitmproxy's
WebSocket layer sends the close to a server connection that was never opened and its HTTP layer crashes
("mitmproxy has crashed!", KeyError; tests/e2e/test_e2e_responses_ws.py proves it). So the gateway points the
upgrade at its one server, the relay (relay.py: in-process, a one-time token), which hands the connection
to `Sockets.session`; mitmproxy relays the frames like any server's. Each message that asks for a turn runs as its
own exchange (observers, ledger, retries, account pool), just as a POST would.

Turns run in lanes (`Lanes`): those with the same `stream_id` one after another in the order sent, each lane
beside the others (at most MAX_LANES at once on a connection, then `websocket_stream_limit_reached`); a
message without one is on the default lane. Every event of a lane's turn echoes its `stream_id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import wsproto.events as ws_events
from wsproto import ConnectionType, WSConnection
from mitmproxy import connection
from wsproto.connection import ConnectionState

from ..settings.config import Config
from ..errors import GatewayError
from ..exchange import Exchange
from ..log_tally import LogTally
from ..seams import websocket_messages
from . import TurnRunner
from .relay import TOKEN_HEADER, LoopbackRelay
from .socket_budget import ReadAhead, close_code
from .socket_flow import is_upgrade, trim_ended, websockets_on
from .socket_lanes import MAX_LANES, Lanes
from .socket_turns import SocketDialect, SocketSession, SocketTurns

if TYPE_CHECKING:
    from mitmproxy import http

log = logging.getLogger("qwen")

LANE_ID = re.compile(r"[A-Za-z0-9_.-]{1,256}")  # the spec's stream_id: ^[A-Za-z0-9_.-]+$, 1 to 256 characters
CLOSE_WAIT_S = 2.0  # at shutdown, how long clients may take to answer the gateway's close


class Sockets:
    """The gateway's WebSocket sessions, served on its relay, and the turns they run, each by the gateway's turn
    (`runner`) exactly as a streamed POST is (socket_turns.py); what the messages mean is the `dialect`'s. The
    dialect endpoint's `upgrade` is `route`; the wiring `stop`s it."""

    def __init__(self, relay: LoopbackRelay, runner: TurnRunner, dialect: SocketDialect) -> None:
        self.relay = relay
        self.dialect = dialect
        self.turns = SocketTurns(runner, dialect)
        self._sessions: set[asyncio.Task] = set()
        self._open: dict[asyncio.Task, SocketSession] = {}  # the sessions talking, by their connection's task
        self.max_message = Config.max_body  # a response.create is a request body: qwen_max_body_mb
        self.idle_timeout = Config.websocket_idle_timeout  # qwen_websocket_idle_timeout (0: never)
        self.read_ahead = ReadAhead()  # bytes held ahead of turns' end: per connection, all together
        self.tally = LogTally(log)

    def configure(self, config: Config) -> None:
        """The limits from the options: a message over qwen_max_body_mb, or past a read-ahead budget, is refused
        while mitmproxy reads it (seams/websocket_messages.py; without the seam, here once mitmproxy has
        gathered it)."""
        self.max_message, self.idle_timeout = config.max_body, config.websocket_idle_timeout
        self.read_ahead.configure(config.max_body, config.websocket_read_ahead)
        websocket_messages.install(websocket_messages.Bound(self.max_message, self.owns, self._refusal,
                                                            self._gathering))

    def relayed(self, flow: http.HTTPFlow) -> None:
        """mitmproxy's `websocket_message`: a client's message relayed to the gateway's server is counted."""
        message = flow.websocket.messages[-1] if flow.websocket and flow.websocket.messages else None
        if message is not None and message.from_client and not message.dropped and self.owns(flow):
            self.read_ahead.relayed(flow.id, len(message.content))

    def ended(self, flow: http.HTTPFlow) -> None:
        """mitmproxy's `websocket_end`: what the connection held is given back, its flow's newest messages cut."""
        self.read_ahead.close(flow.id)
        if self.owns(flow):
            trim_ended(flow)

    def _gathering(self, flow: http.HTTPFlow, size: int) -> tuple[int, str] | None:
        refused = self.read_ahead.gathering(flow.id, size)
        return None if refused is None else (close_code(refused), self._said(flow, refused))

    def _said(self, flow: http.HTTPFlow, refused: GatewayError) -> str:
        """A read-ahead refusal's error event, and one log line per 10 s with the count."""
        peer = flow.client_conn.peername[0] if flow.client_conn.peername else "?"
        self.tally.note(f"read_ahead_{refused.status}", lambda n: f"qwen: refused {n} WebSocket message"
                        f"{'s' if n != 1 else ''} past the read-ahead limit ({close_code(refused)}; "
                        f"{refused.code}), the last from {peer}: {refused.message}")
        return self.turns.refusal(refused).decode()

    def owns(self, flow: http.HTTPFlow) -> bool:
        """A WebSocket flow to the relay (its upgrade routed here)."""
        return self.relay.address is not None and flow.server_conn.address == self.relay.address

    def _too_big(self) -> GatewayError:
        return GatewayError(413, f"WebSocket message too large: the limit is {self.max_message >> 20} MiB "
                                 "(qwen_max_body_mb).", code="request_too_large")

    def _refusal(self, flow: http.HTTPFlow) -> str:
        """What the client of a message over the limit reads before the close (1009), and one log line."""
        peer = flow.client_conn.peername[0] if flow.client_conn.peername else "?"
        limit = self.max_message >> 20
        self.tally.note("ws_message", lambda n: f"qwen: refused {n} WebSocket message{'s' if n != 1 else ''} over "
                                                 f"{limit} MiB (1009; qwen_max_body_mb), the last from {peer}")
        return self.turns.refusal(self._too_big()).decode()

    # ---- the upgrade ---------------------------------------------------------------------------------

    async def close(self) -> None:
        """At shutdown, before mitmproxy's client connections close: each session is told `going away` (1001)
        after the last event it was sent, so its client reads every one; until they end (at most CLOSE_WAIT_S)."""
        for session in self._open.values():
            if session.ws.state is ConnectionState.OPEN and not session.writer.is_closing():
                session.writer.write(session.ws.send(ws_events.CloseConnection(code=1001, reason="gateway stopping")))
        if self._open:
            await asyncio.wait(set(self._open), timeout=CLOSE_WAIT_S)

    def stop(self) -> None:
        self.tally.close()
        for task in list(self._sessions):
            task.cancel()

    async def route(self, flow: http.HTTPFlow, ex: Exchange) -> bool:
        """A WebSocket upgrade (else False: not one) pointed at the relay, which answers 101 and hands the
        connection to `session`: mitmproxy then relays the frames. With mitmproxy's WebSockets off, a 426:
        Codex then posts over HTTPS at once (one attempt, where a 405 or 404 costs seven attempts and ~7 s of
        "Reconnecting…")."""
        if not is_upgrade(flow):
            return False
        if not websockets_on():
            raise GatewayError(426, "WebSockets are off in this proxy (websocket=false): use HTTPS.",
                               code="websocket_disabled", headers={"upgrade": "websocket"})
        host, port = await self.relay.start()
        token = self.relay.expect_handler(functools.partial(self.session, flow, ex))
        ex.notes.append(f"WebSocket transport ({self.dialect.shown})")
        req = flow.request
        shown = req.host_header
        req.scheme = "http"
        req.host, req.port = host, port
        req.host_header = shown
        req.headers[TOKEN_HEADER] = token
        flow.server_conn = connection.Server(address=(host, port))  # direct: not via --mode upstream's proxy
        return True

    # ---- the connection --------------------------------------------------------------------------------

    async def session(self, flow: http.HTTPFlow, upgrade: Exchange, head: bytes, headers: dict[str, str],
                      reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """The relay's handler of one upgrade (`upgrade`: its exchange, for the key hint and the URL): the 101,
        then the session until either side closes it. The connection is not used again."""
        task = asyncio.current_task()
        if task is not None:
            self._sessions.add(task)
        try:
            await self._serve(flow, upgrade, head, reader, writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("qwen: WebSocket connection failed")
        finally:
            if task is not None:
                self._sessions.discard(task)
        return False

    async def _serve(self, flow: http.HTTPFlow, upgrade: Exchange, head: bytes, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        ws.receive_data(head)
        request = next((e for e in ws.events() if isinstance(e, ws_events.Request)), None)
        if request is None:
            body = GatewayError(400, "Not a WebSocket upgrade.", code="socket_refused").to_bytes()
            writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                         b"connection: close\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            return
        flow.request.headers.pop(TOKEN_HEADER, None)
        writer.write(ws.send(ws_events.AcceptConnection()))  # no extensions: frames stay as they are
        await writer.drain()
        session = SocketSession(flow, upgrade, ws, writer, self.dialect.connected())
        task = asyncio.current_task()
        if task is not None:
            self._open[task] = session
        lanes: Lanes | None = None
        try:
            async with asyncio.timeout(None) as idle:  # armed whenever no turn runs or waits (`_rest`)
                self._rest(idle)
                lanes = Lanes(functools.partial(self.turns.message, session), session.writer.drain,
                              functools.partial(self._rest, idle))
                await self._read(session, reader, lanes, idle)
        except TimeoutError:  # idle too long: closed as a normal end (the client opens another for its next turn)
            if ws.state is ConnectionState.OPEN and not writer.is_closing():
                writer.write(ws.send(ws_events.CloseConnection(
                    code=1000, reason=f"idle for {self.idle_timeout:g} s (qwen_websocket_idle_timeout)")))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(writer.drain(), CLOSE_WAIT_S)
        finally:
            if task is not None:
                self._open.pop(task, None)
            if lanes is not None:
                await lanes.close()
            self.read_ahead.close(flow.id)

    async def _read(self, session: SocketSession, reader: asyncio.StreamReader, lanes: Lanes,
                    idle: asyncio.Timeout) -> None:
        """The client's messages, each queued on its lane as it ends (at most QUEUED ahead of the lane's turn)."""
        ws, writer = session.ws, session.writer
        parts: list[str] = []  # the text message being read (a binary one is only counted: it is refused)
        size = 0
        while True:
            data = await reader.read(65536)
            if not data:
                return
            ws.receive_data(data)
            for ev in ws.events():
                if isinstance(ev, ws_events.Message):
                    if isinstance(ev, ws_events.TextMessage):
                        parts.append(ev.data)
                    size += len(ev.data) + websocket_messages.FRAME_COST  # as mitmproxy's reader counts (the seam)
                    if size > self.max_message:  # reached only without the seam: mitmproxy gathered it whole
                        session.send(self.turns.refusal(self._too_big()))
                        writer.write(ws.send(ws_events.CloseConnection(code=1009, reason="message too big")))
                        return
                    if not ev.message_finished:
                        continue
                    text = "".join(parts) if isinstance(ev, ws_events.TextMessage) else None
                    parts, size = [], 0
                    account, held, refused = self.read_ahead.received(session.flow.id)
                    done = functools.partial(account.release, held)  # its bytes given back once it is answered
                    if refused is not None:  # reached only without the seam: mitmproxy gathered it unbounded
                        session.send(self.turns.refusal(refused))
                        writer.write(ws.send(ws_events.CloseConnection(code=close_code(refused))))
                        return
                    if text is None:
                        done()
                        session.send(self.turns.refusal(GatewayError(
                            400, "Send response.create as a text message.", code="invalid_message")))
                        continue
                    await self._queue(session, lanes, text, idle, done)
                elif isinstance(ev, ws_events.Ping):
                    writer.write(ws.send(ev.response()))
                elif isinstance(ev, ws_events.CloseConnection):
                    if ws.state is ConnectionState.REMOTE_CLOSING:
                        writer.write(ws.send(ev.response()))
                    await writer.drain()
                    return
            await writer.drain()

    def _rest(self, idle: asyncio.Timeout) -> None:
        """Nothing to do: the socket is closed if its client sends nothing for idle_timeout (0: never)."""
        idle.reschedule(asyncio.get_running_loop().time() + self.idle_timeout if self.idle_timeout > 0 else None)

    async def _queue(self, session: SocketSession, lanes: Lanes, text: str, idle: asyncio.Timeout,
                     done: Callable[[], None]) -> None:
        """A message onto its lane (its `stream_id`; the default lane: none, or not JSON), or refused; `done` once
        it is answered (its read-ahead given back)."""
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        lane = message.get("stream_id") if isinstance(message, dict) else None
        if lane is not None and not (isinstance(lane, str) and LANE_ID.fullmatch(lane)):
            done()
            session.send(self.turns.refusal(GatewayError(
                400, "Invalid 'stream_id': 1 to 256 of the characters A-Z, a-z, 0-9, '_', '.' and '-'.",
                code="invalid_value", param="stream_id")))
            return
        idle.reschedule(None)  # a turn waits: not idle until its lane is done with it
        if not await lanes.put(lane, message, len(text), done):
            done()
            session.send(self.turns.refusal(GatewayError(
                400, f"This WebSocket connection has reached its stream limit ({MAX_LANES} lanes at once).",
                code="websocket_stream_limit_reached", param="stream_id"), lane))  # MAX_LANES run: not idle
