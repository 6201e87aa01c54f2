"""One `response.create` on a Responses WebSocket (socket.py): run as its own exchange, exactly as a
POST /v1/responses with `"stream": true` would be — observers, context guard, engine, stream translation,
pool, stored response — with each event sent as one JSON text frame. A continuation turn that fails evicts
its previous_response_id from the connection (`Session.evict`), as the spec requires."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import TYPE_CHECKING

import wsproto.events as ws_events
from wsproto import WSConnection
from wsproto.connection import ConnectionState

from ...errors import GatewayError, gateway_error
from ...storage.health import StateUnavailable
from ...exchange import ClientRequest, Exchange
from ...pivot import Endpoint
from ...turn import TurnRunner
from .history import history_items
from .items import new_id
from .output import completion_time, response_object
from .request import check_request
from .store import ResponseStore, previous_not_found
from .stream import ResponsesStreamTranslator

if TYPE_CHECKING:
    from mitmproxy import http

log = logging.getLogger("qwen")

KEEP_RESPONSES = 8  # a connection's own recent responses, for previous_response_id
KEEP_EVICTED = 64  # responses a failed continuation evicted, refused on the connection from then on


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


class Turns:
    """The turns of every WebSocket, each run by the gateway's turn (`runner`, turn/runner.py) as a streamed POST
    /v1/responses is: the Responses `endpoint`, its stored Responses (`store`: the sealer of history items)."""

    def __init__(self, runner: TurnRunner, endpoint: Endpoint[Exchange], store: Callable[[], ResponseStore]) -> None:
        self.runner = runner
        self.endpoint = endpoint
        self.store = store

    async def message(self, session: Session, text: str) -> None:
        """One message of the client's: a `response.create` is run as a turn; acknowledgements need nothing."""
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "response.create":
            await self.run(session, {k: v for k, v in message.items() if k != "type"}, len(text))
        elif kind not in ("response.processed", "response.cancel"):  # nothing runs in the background
            session.send(_encode(_error_event(GatewayError(
                400, f"Unknown WebSocket message type {kind!r}: send response.create.",
                code="invalid_message", param="type"))))

    async def run(self, session: Session, body: dict, size: int) -> None:
        up, flow = session.upgrade, session.flow
        ex = Exchange(ClientRequest("POST", up.client.path, up.client.url, up.client.key_hint, size,
                                    user_agent=up.client.user_agent),
                      route="responses", endpoint=self.endpoint, stream=True)
        ex.notes.append("over WebSocket")
        # the connection's named key: each turn is limited and counted
        ex.key_name, ex.key_record = up.key_name, up.key_record
        session.turns += 1
        prev = body.get("previous_response_id")
        kept = False  # the turn ended with a response the connection keeps: else it failed
        try:
            body["stream"] = True
            self.runner.received(ex, body, flow)
            if isinstance(prev, str) and prev in session.evicted:
                raise previous_not_found(prev)
            if isinstance(prev, str) and prev in session.history:
                ex.extra["history"] = session.history[prev]
            if body.pop("generate", True) is False:  # a warm-up: the connection is ready, nothing to generate
                self._warm_up(session, ex, check_request(body))  # (generate: the socket's field, not the request's)
                kept = True
                return
            await self.runner.translate(ex)
            resp = await self.runner.open(ex)

            async def send(outs: list[bytes]) -> None:
                for out in outs:
                    session.send(out)
                await session.writer.drain()

            try:
                await self.runner.pump(ex, resp, send, translator=self._translator(ex))
            finally:
                await resp.aclose()
            kept = self._remember(session, ex, self.runner.streamed(ex))
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
            if not kept and isinstance(prev, str):
                session.evict(prev)
            if ex.status is None:
                ex.status = 200
            self.runner.finish(flow, ex)

    def _translator(self, ex: Exchange) -> ResponsesStreamTranslator:
        return ResponsesStreamTranslator(ex.body or {}, response_id=ex.extra["response_id"], created_at=ex.created,
                                         tools=ex.extra.get("tools"), seal=self.store().sealer.seal,
                                         compaction=bool(ex.extra.get("compaction")), encode=_encode)

    def _remember(self, session: Session, ex: Exchange, final: dict | None) -> bool:
        """The turn's response, for this connection's next `previous_response_id`: whether there was one to keep
        (none when the stream failed, or the response could not be stored)."""
        translator = ex.rewriter.translator if ex.rewriter is not None else None
        if final is None or ex.unkept or not isinstance(translator, ResponsesStreamTranslator):
            return False
        summary = translator.summary if ex.extra.get("compaction") else None
        session.remember(final["id"], history_items(ex.extra.get("items") or [], final, self.store().sealer.seal,
                                                    summary=summary, reasoning=translator.reasoning))
        return True

    def _warm_up(self, session: Session, ex: Exchange, body: dict) -> None:
        rid = new_id("resp")
        seq = 0

        def ev(kind: str, status: str) -> bytes:
            nonlocal seq
            r = response_object(body, response_id=rid, created_at=ex.created, status=status, output=[],
                                usage={"prompt_tokens": 0, "completion_tokens": 0} if status == "completed" else None,
                                completed_at=completion_time(status))
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

