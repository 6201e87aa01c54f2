"""The Responses API over WebSocket (`GET /v1/responses` with `Upgrade: websocket`), as Codex speaks it.

Codex first opens a WebSocket to the Responses endpoint; it sends `{"type": "response.create", …}` text
messages (a request body) and reads the same events a stream carries, one JSON text frame each, until
`response.completed` (or `response.failed`, or an `error` event). On one connection it may continue from
the previous response by id with only the new items, whether or not it stores responses: the connection
keeps its own recent history. `"generate": false` only warms the connection up (no call to Qwen).

mitmproxy 12.2 lets an addon answer the upgrade itself (a 101 set in the `request` hook becomes a WebSocket
flow, and `inject.websocket` reaches the client), but when the client then closes the socket, mitmproxy's
WebSocket layer sends the close to a server connection that was never opened and its HTTP layer crashes
("mitmproxy has crashed!", KeyError; tests/e2e/test_e2e_responses_ws.py proves it). So, like the loopback relay
that serves streams, the gateway points the upgrade at this small WebSocket server on 127.0.0.1 (a random
port, one-time tokens), and mitmproxy relays the frames like any server's. Each `response.create` runs as
its own exchange (observers, ledger, retries, account pool), just as a POST would.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import wsproto.events as ws_events
from wsproto import ConnectionType, WSConnection
from mitmproxy import connection
from wsproto.connection import ConnectionState

from ...errors import GatewayError
from ...exchange import Exchange
from ...loopback import LoopbackServer
from ...pivot import Endpoint
from ...turn import TurnRunner
from .socket_turns import Session, Turns, _encode, _error_event
from .store import ResponseStore

if TYPE_CHECKING:
    from mitmproxy import http

log = logging.getLogger("qwen")

TOKEN_HEADER = "x-qwen-socket"
MAX_MESSAGE = 64 << 20  # a response.create body (Codex sends up to a few MB of history)
KEEP_FLOW_MESSAGES = 200  # WebSocket messages kept on the flow (mitmproxy keeps every one otherwise)
PENDING_S = 60.0  # an upgrade mitmproxy has not brought to the server by then never will
CLOSE_WAIT_S = 2.0  # at shutdown, how long clients may take to answer the gateway's close


def wants_socket(flow: http.HTTPFlow, ex: Exchange) -> bool:
    """A WebSocket upgrade of the Responses endpoint."""
    req = flow.request
    return (ex.endpoint is not None and ex.endpoint.name == "responses" and req.method.upper() == "GET"
            and req.headers.get("upgrade", "").lower() == "websocket")


def trim_messages(flow: http.HTTPFlow) -> None:
    """mitmproxy keeps every WebSocket message on the flow for the connection's lifetime; a long Codex
    session sends thousands of events per turn. Keep the newest."""
    ws = flow.websocket
    if ws is not None and len(ws.messages) > 2 * KEEP_FLOW_MESSAGES:
        del ws.messages[:-KEEP_FLOW_MESSAGES]


def _websockets_on() -> bool:
    try:
        from mitmproxy import ctx
        return bool(ctx.options.websocket)
    except (AttributeError, KeyError):  # no running mitmproxy (unit tests)
        return True


@dataclass
class _Pending:
    flow: http.HTTPFlow
    ex: Exchange  # the upgrade request's exchange (its key hint, its URL)
    at: float = field(default_factory=time.monotonic)


class ResponsesSockets(LoopbackServer):
    """The loopback WebSocket server and the turns it runs, each by the gateway's turn (`runner`: the Responses
    `endpoint`, its `store`) exactly as a POST /v1/responses is (socket_turns.py). addon.py calls `route` from
    its request hook, allows `address` in server_connect and `stop`s it in done."""

    def __init__(self, runner: TurnRunner, endpoint: Endpoint[Exchange], store: Callable[[], ResponseStore]) -> None:
        super().__init__()
        self.turns = Turns(runner, endpoint, store)
        self._sessions: set[asyncio.Task] = set()
        self._open: dict[asyncio.Task, Session] = {}  # the sessions talking, by their connection's task

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
        for task in list(self._sessions):
            task.cancel()
        super().stop()

    async def route(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        """Point the upgrade at the loopback server (which answers 101): mitmproxy then relays the frames.
        With mitmproxy's WebSockets off, a 426: Codex then posts over HTTPS at once (one attempt, where a
        405 or 404 costs seven attempts and ~7 s of "Reconnecting…")."""
        if not _websockets_on():
            raise GatewayError(426, "WebSockets are off in this proxy (websocket=false): use HTTPS.",
                               code="websocket_disabled", headers={"upgrade": "websocket"})
        host, port = await self.start()
        now = time.monotonic()
        for old in [t for t, p in self._pending.items() if now - p.at > PENDING_S]:  # never connected
            del self._pending[old]
        token = secrets.token_urlsafe(24)
        self._pending[token] = _Pending(flow, ex)
        ex.extra["socket"] = True
        ex.notes.append("WebSocket transport (Responses API)")
        req = flow.request
        shown = req.host_header
        req.scheme = "http"
        req.host, req.port = host, port
        req.host_header = shown
        req.headers[TOKEN_HEADER] = token
        flow.server_conn = connection.Server(address=(host, port))  # direct: not via --mode upstream's proxy

    # ---- the connection --------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._sessions.add(task)
        try:
            await self._serve(reader, writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("qwen: WebSocket connection failed")
        finally:
            if task is not None:
                self._sessions.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        token = ""
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, sep, value = line.partition(":")
            if sep and name.strip().lower() == TOKEN_HEADER:
                token = value.strip()
        pending = self._pending.pop(token, None)
        ws = WSConnection(ConnectionType.SERVER)
        ws.receive_data(head)
        request = next((e for e in ws.events() if isinstance(e, ws_events.Request)), None)
        if pending is None or request is None:
            body = GatewayError(403, "This socket serves only upgrades the gateway prepared.",
                                code="socket_refused").to_bytes()
            writer.write(b"HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                         b"connection: close\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            return
        pending.flow.request.headers.pop(TOKEN_HEADER, None)
        writer.write(ws.send(ws_events.AcceptConnection()))  # no extensions: frames stay as they are
        await writer.drain()
        session = Session(pending.flow, pending.ex, ws, writer)
        task = asyncio.current_task()
        if task is not None:
            self._open[task] = session
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        worker = asyncio.ensure_future(self._worker(session, queue))
        parts: list[str] = []
        size = 0
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                ws.receive_data(data)
                for ev in ws.events():
                    if isinstance(ev, ws_events.TextMessage):
                        parts.append(ev.data)
                        size += len(ev.data)
                        if size > MAX_MESSAGE:
                            writer.write(ws.send(ws_events.CloseConnection(code=1009, reason="message too big")))
                            return
                        if ev.message_finished:
                            queue.put_nowait("".join(parts))
                            parts, size = [], 0
                    elif isinstance(ev, ws_events.BytesMessage):
                        session.send(_encode(_error_event(GatewayError(
                            400, "Send response.create as a text message.", code="invalid_message"))))
                    elif isinstance(ev, ws_events.Ping):
                        writer.write(ws.send(ev.response()))
                    elif isinstance(ev, ws_events.CloseConnection):
                        if ws.state is ConnectionState.REMOTE_CLOSING:
                            writer.write(ws.send(ev.response()))
                        await writer.drain()
                        return
                await writer.drain()
        finally:
            if task is not None:
                self._open.pop(task, None)
            queue.put_nowait(None)
            if not worker.done():
                worker.cancel()
            try:
                await worker
            except asyncio.CancelledError:
                pass

    async def _worker(self, session: Session, queue: asyncio.Queue) -> None:
        """One turn at a time, in the order the client sent them."""
        while True:
            text = await queue.get()
            if text is None:
                return
            try:
                message = json.loads(text)
            except ValueError:
                message = None
            kind = message.get("type") if isinstance(message, dict) else None
            if kind == "response.create":
                await self.turns.run(session, {k: v for k, v in message.items() if k != "type"}, len(text))
            elif kind in ("response.processed", "response.cancel"):
                continue  # acknowledgements: nothing to do (nothing runs in the background)
            else:
                session.send(_encode(_error_event(GatewayError(
                    400, f"Unknown WebSocket message type {kind!r}: send response.create.",
                    code="invalid_message", param="type"))))
            await session.writer.drain()
