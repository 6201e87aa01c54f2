"""The Responses API over WebSocket (`GET /v1/responses` with `Upgrade: websocket`), as Codex speaks it.

Codex first opens a WebSocket to the Responses endpoint; it sends `{"type": "response.create", …}` text
messages (a request body) and reads the same events a stream carries, one JSON text frame each, until
`response.completed` (or `response.failed`, or an `error` event). On one connection it may continue from
the previous response by id with only the new items, whether or not it stores responses: the connection
keeps its own recent history. `"generate": false` only warms the connection up (no call to Qwen).

mitmproxy 12.2 lets an addon answer the upgrade itself (a 101 set in the `request` hook becomes a WebSocket
flow, and `inject.websocket` reaches the client), but when the client then closes the socket, mitmproxy's
WebSocket layer sends the close to a server connection that was never opened and its HTTP layer crashes
("mitmproxy has crashed!", KeyError; tests/test_e2e_responses_ws.py proves it). So, like the loopback relay
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
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import wsproto.events as ws_events
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState

from ...auth.base import Outcome
from ...errors import GatewayError
from ...exchange import ClientRequest, Exchange
from ...loopback import LoopbackServer
from ...observe.guard import context_check
from ...sse import encode as sse_encode
from ...streaming import StreamRewriter, stream_error
from ...upstream.client import UpstreamError, UpstreamTimeout
from ..chat_stream import ChunkNormalizer
from .request import history_items, new_id, response_object
from .stream import ResponsesStreamTranslator

if TYPE_CHECKING:
    from mitmproxy import http

log = logging.getLogger("qwen")

TOKEN_HEADER = "x-qwen-socket"
MAX_MESSAGE = 64 << 20  # a response.create body (Codex sends up to a few MB of history)
KEEP_RESPONSES = 8  # a connection's own recent responses, for previous_response_id
KEEP_FLOW_MESSAGES = 200  # WebSocket messages kept on the flow (mitmproxy keeps every one otherwise)
PENDING_S = 60.0  # an upgrade mitmproxy has not brought to the server by then never will


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


def _encode(payload: dict) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass
class _Pending:
    flow: http.HTTPFlow
    ex: Exchange  # the upgrade request's exchange (its key hint, its URL)
    at: float = field(default_factory=time.monotonic)


@dataclass
class _Session:
    """One client's WebSocket: its flow, its recent responses (id -> history items)."""

    flow: http.HTTPFlow
    upgrade: Exchange
    ws: WSConnection
    writer: asyncio.StreamWriter
    history: OrderedDict[str, list[dict]] = field(default_factory=OrderedDict)
    turns: int = 0

    def send(self, data: bytes) -> None:
        if self.ws.state is ConnectionState.OPEN and not self.writer.is_closing():
            self.writer.write(self.ws.send(ws_events.TextMessage(data=data.decode("utf-8", "replace"))))

    def remember(self, response_id: str, items: list[dict]) -> None:
        self.history[response_id] = items
        while len(self.history) > KEEP_RESPONSES:
            self.history.popitem(last=False)


class ResponsesSockets(LoopbackServer):
    """The loopback WebSocket server and the turns it runs. `gateway` is the QwenGateway, whose parts a turn
    uses exactly as a POST /v1/responses does: `endpoints["/responses"]`, `config`, `engine.open`, `pool`,
    `_responses()` (the store and its sealer), `_flows` (the engine's upstream_request callback finds the
    flow there), `observers` (their points), `_report` (the pool) and `_finish` (the record, the
    finished observers). addon.py calls `route` from its request hook, allows `address` in server_connect
    and `stop`s it in done."""

    def __init__(self, gateway) -> None:
        super().__init__()
        self.gw = gateway
        self._sessions: set[asyncio.Task] = set()

    # ---- the upgrade ---------------------------------------------------------------------------------

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
        session = _Session(pending.flow, pending.ex, ws, writer)
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
            queue.put_nowait(None)
            if not worker.done():
                worker.cancel()
            try:
                await worker
            except asyncio.CancelledError:
                pass

    async def _worker(self, session: _Session, queue: asyncio.Queue) -> None:
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
                await self._turn(session, {k: v for k, v in message.items() if k != "type"}, len(text))
            elif kind in ("response.processed", "response.cancel"):
                continue  # acknowledgements: nothing to do (nothing runs in the background)
            else:
                session.send(_encode(_error_event(GatewayError(
                    400, f"Unknown WebSocket message type {kind!r}: send response.create.",
                    code="invalid_message", param="type"))))
            await session.writer.drain()

    # ---- one turn --------------------------------------------------------------------------------------

    async def _turn(self, session: _Session, body: dict, size: int) -> None:
        gw, up = self.gw, session.upgrade
        endpoint = gw.endpoints["/responses"]
        ex = Exchange(ClientRequest("POST", up.client.path, up.client.url, up.client.key_hint, size),
                      route="responses", endpoint=endpoint, body=body, stream=True)
        ex.requested_model = body["model"] if isinstance(body.get("model"), str) else ""
        ex.notes.append("over WebSocket")
        session.turns += 1
        flow = session.flow
        gw._flows[ex.id] = flow
        rw: StreamRewriter | None = None
        try:
            gw.observers.notify("client_request", ex, flow)
            prev = body.get("previous_response_id")
            if isinstance(prev, str) and prev in session.history:
                ex.extra["history"] = session.history[prev]
            body["stream"] = True
            if body.get("generate") is False:  # a warm-up: the connection is ready, nothing to generate
                self._warm_up(session, ex, body)
                return
            ex.chat_body = endpoint.to_chat(body, ex)
            refusal = await context_check(ex, gw.config)
            if refusal is not None:
                raise refusal
            rw = StreamRewriter(ChunkNormalizer(ex.requested_model or ex.upstream_model), self._translator(ex))
            ex.rewriter = rw
            resp = await gw.engine.open(ex)
            gw.observers.notify("stream_started", ex, flow)
            try:
                await self._pump(session, ex, rw, resp)
            finally:
                await resp.aclose()
            self._settle(session, ex, rw)
        except GatewayError as e:
            ex.fail(e.status, e.code, e.message)
            if e.code == "context_length_exceeded" and "response_id" in ex.extra:
                ex.stream_error = e.message
                for out in self._translator(ex).fail({"message": e.message, "code": e.code,
                                                      "type": "invalid_request_error"}):
                    session.send(out)
            else:
                session.send(_encode(_error_event(e)))
        except asyncio.CancelledError:
            ex.stream_error = ex.stream_error or "the client closed the WebSocket"
            ex.status = ex.status or 499
            raise
        except Exception as e:
            log.exception("qwen: a WebSocket turn failed")
            err = GatewayError(500, f"The gateway failed: {type(e).__name__}.")
            ex.fail(err.status, err.code, err.message)
            session.send(_encode(_error_event(err)))
        finally:
            if ex.status is None:
                ex.status = 200
            gw._finish(flow, ex)

    def _translator(self, ex: Exchange) -> ResponsesStreamTranslator:
        store = self.gw._responses()
        return ResponsesStreamTranslator(ex.body or {}, response_id=ex.extra["response_id"], created_at=ex.created,
                                         tools=ex.extra.get("tools"), seal=store.sealer.seal,
                                         compaction=bool(ex.extra.get("compaction")), encode=_encode)

    async def _pump(self, session: _Session, ex: Exchange, rw: StreamRewriter, resp) -> None:
        def send(outs: list[bytes]) -> None:
            for out in outs:
                session.send(out)

        try:
            async for chunk in resp.aiter_raw():
                if chunk:
                    send(rw(chunk))
                    await session.writer.drain()
                if rw.finished:
                    break
        except UpstreamTimeout:
            idle = self.gw.config.stream_idle_timeout
            send(rw(sse_encode({"error": stream_error(f"Qwen sent nothing for {idle:g} s: the gateway ended the "
                                                      "stream (qwen_stream_idle_timeout).", "stream_idle_timeout")})))
        except UpstreamError as e:
            send(rw(sse_encode({"error": stream_error(f"Qwen broke off the stream: {e}.",
                                                      "upstream_connection_error")})))
        send(rw(b""))
        await session.writer.drain()

    def _settle(self, session: _Session, ex: Exchange, rw: StreamRewriter) -> None:
        """As the gateway's `response` hook does for a stream: usage, the pool, the stored response."""
        gw = self.gw
        ex.usage = rw.normalizer.usage
        ex.first_byte_at = rw.first_byte_at
        if rw.error:
            ex.stream_error = str(rw.error.get("message"))
        gw._report(ex, Outcome.OK if not rw.error else Outcome.THROTTLE if rw.throttled else Outcome.ERROR)
        translator = rw.translator
        if rw.error or not isinstance(translator, ResponsesStreamTranslator):
            return
        final = translator.response()
        assert ex.endpoint is not None and ex.endpoint.finished is not None  # the Responses endpoint keeps it
        ex.endpoint.finished(ex, final)
        summary = translator.summary if ex.extra.get("compaction") else None
        session.remember(final["id"], history_items(ex.extra.get("items") or [], final,
                                                    gw._responses().sealer.seal, summary=summary))

    def _warm_up(self, session: _Session, ex: Exchange, body: dict) -> None:
        rid = new_id("resp")
        seq = 0

        def ev(kind: str, status: str) -> bytes:
            nonlocal seq
            r = response_object(body, response_id=rid, created_at=ex.created, status=status, output=[],
                                usage={"prompt_tokens": 0, "completion_tokens": 0} if status == "completed" else None)
            seq += 1
            return _encode({"type": kind, "response": r, "sequence_number": seq - 1})

        for kind, status in (("response.created", "in_progress"), ("response.in_progress", "in_progress"),
                             ("response.completed", "completed")):
            session.send(ev(kind, status))
        prev = body.get("previous_response_id")
        session.remember(rid, list(session.history.get(prev, [])) if isinstance(prev, str) else [])
        ex.notes.append("warm-up (generate: false): nothing sent to Qwen")
        ex.status = 200


def _error_event(e: GatewayError) -> dict:
    """An `error` event as the Responses WebSocket sends one: the spec's fields (code, message, param) and
    the HTTP status with the error object, which Codex maps to what it does for that status."""
    return {"type": "error", "status": e.status, "code": e.code, "message": e.message, "param": e.param,
            "error": {"type": e.type, "code": e.code, "message": e.message, "param": e.param},
            **({"headers": e.headers} if e.headers else {}), "sequence_number": 0}

