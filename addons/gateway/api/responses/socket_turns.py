"""One `response.create` on a Responses WebSocket (socket.py): run as its own exchange, exactly as a
POST /v1/responses with `"stream": true` would be — observers, context guard, engine, stream translation,
pool, stored response — with each event sent as one JSON text frame."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import wsproto.events as ws_events
from wsproto import WSConnection
from wsproto.connection import ConnectionState

from ...accounts import Outcome
from ...storage.health import StateUnavailable
from ...errors import ConnectionFailed, GatewayError, UpstreamTimeout, gateway_error
from ...exchange import ClientRequest, Exchange
from ...forward import keep_early, until_kept
from ...sse import encode as sse_encode
from ...streaming import StreamRewriter, stream_error
from .history import history_items
from .items import new_id
from .output import response_object
from .request import check_request
from .stream import ResponsesStreamTranslator

if TYPE_CHECKING:
    from mitmproxy import http

log = logging.getLogger("qwen")

KEEP_RESPONSES = 8  # a connection's own recent responses, for previous_response_id


def _encode(payload: dict) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass
class Session:
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


class Turns:
    """The turns of every WebSocket; `gateway` is the QwenGateway (see ResponsesSockets for what it uses)."""

    def __init__(self, gateway) -> None:
        self.gw = gateway

    async def run(self, session: Session, body: dict, size: int) -> None:
        gw, up = self.gw, session.upgrade
        endpoint = gw.endpoints["/responses"]
        ex = Exchange(ClientRequest("POST", up.client.path, up.client.url, up.client.key_hint, size),
                      route="responses", endpoint=endpoint, body=body, stream=True)
        ex.requested_model = body["model"] if isinstance(body.get("model"), str) else ""
        ex.notes.append("over WebSocket")
        gw.team.bind(ex, up.extra.get("key"))  # the connection's named key: each turn is limited and counted
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
            if body.pop("generate", True) is False:  # a warm-up: the connection is ready, nothing to generate
                self._warm_up(session, ex, check_request(body))  # (generate: the socket's field, not the request's)
                return
            if endpoint.prepare is not None:
                await endpoint.prepare(body, ex)
            ex.chat_body = endpoint.to_chat(body, ex)
            await gw.check_context(ex)
            resp = await gw.engine.open(ex)
            assert ex.upstream is not None  # the engine chose the account, and with it the upstream
            rw = ex.rewriter = StreamRewriter(ex.upstream.chunks(ex.requested_model or ex.upstream_model),
                                              self._translator(ex))
            gw.observers.notify("stream_started", ex, flow)
            gate = None
            if ex.extra.get("keep_before_end"):  # stored before response.completed goes out
                gate = asyncio.get_running_loop().create_future()
                rw.park = lambda: keep_early(ex, gate)
            try:
                await self._pump(session, ex, rw, resp, gate)
            finally:
                await resp.aclose()
            self._settle(session, ex, rw)
        except (GatewayError, StateUnavailable) as caught:
            e = gateway_error(caught)
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
            gw.settle.finish(flow, ex)

    def _translator(self, ex: Exchange) -> ResponsesStreamTranslator:
        store = self.gw._responses()
        return ResponsesStreamTranslator(ex.body or {}, response_id=ex.extra["response_id"], created_at=ex.created,
                                         tools=ex.extra.get("tools"), seal=store.sealer.seal,
                                         compaction=bool(ex.extra.get("compaction")), encode=_encode)

    async def _pump(self, session: Session, ex: Exchange, rw: StreamRewriter, resp,
                    gate: asyncio.Future | None = None) -> None:
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
        except ConnectionFailed as e:
            send(rw(sse_encode({"error": stream_error(f"Qwen broke off the stream: {e}.",
                                                      "upstream_connection_error")})))
        if gate is not None and rw.held is not None:  # the final events wait for the write
            await until_kept(ex, gate, "a WebSocket turn")
        send(rw(b""))
        await session.writer.drain()

    def _settle(self, session: Session, ex: Exchange, rw: StreamRewriter) -> None:
        """As the gateway's `response` hook does for a stream: usage, the pool, the stored response."""
        gw = self.gw
        ex.usage = rw.normalizer.usage
        ex.first_byte_at = rw.first_byte_at
        if rw.error:
            ex.stream_error = str(rw.error.get("message"))
        gw.settle.report(ex, Outcome.OK if not rw.error else Outcome.THROTTLE if rw.throttled else Outcome.ERROR)
        translator = rw.translator
        if rw.error or not isinstance(translator, ResponsesStreamTranslator):
            return
        final = translator.response()
        assert ex.endpoint is not None and ex.endpoint.finished is not None  # the Responses endpoint keeps it
        if not ex.extra.get("kept"):  # a parked turn's response was kept before its end
            ex.endpoint.finished(ex, final)
        if ex.extra.get("unkept"):  # not stored: not continued either
            return
        summary = translator.summary if ex.extra.get("compaction") else None
        session.remember(final["id"], history_items(ex.extra.get("items") or [], final,
                                                    gw._responses().sealer.seal, summary=summary,
                                                    reasoning=translator.reasoning))

    def _warm_up(self, session: Session, ex: Exchange, body: dict) -> None:
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

