"""The turn: one client request run from its body to the settled outcome, the same way for every transport —
a POST answered whole or streamed (through the relay), a `response.create` on a Responses WebSocket, a
background response.

    received   the client's body read: the model asked, stream or not; the observers' `client_request`
    translate  the endpoint's own preparation (a stored conversation loaded, its store known to take the
               answer), its client -> chat translation, then each check before upstream (the context guard,
               a named key's budgets and rate limits): a refusal is raised before anything goes upstream
    whole      the engine's answer (or the endpoint's own fetch), translated whole; given up when the client
               leaves; the final object kept for the settlement
    open/pump  the engine's answer opened (retries before the first byte), then each upstream event
               translated into the client's and handed to the transport's `send` at once, the stream's end
               held until the endpoint has kept the answer (keep.py)
    streamed   a pumped stream's outcome: usage, errors, the pool told, the endpoint's keepsake stored

The transport only moves bytes: mitmproxy's flow and the relay (HTTP), WebSocket frames, a background run's
event list. What a turn needs is handed in (wiring.py): the engine's `open`, the checks, the observers and
the settlement. `TurnRunner` (turn/__init__.py) is what the api wing sees of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from mitmproxy import connection, http

from ..dispatch import Observers
from ..errors import ConnectionFailed, GatewayError, UpstreamTimeout
from ..exchange import Exchange
from ..local import json_response
from ..pivot import StreamTranslator, UpstreamAnswer
from ..sse import encode as sse_encode
from ..streaming import stream_error
from .cut import Cuts, Stopping
from .keep import park_until_kept, until_kept
from .settle import Settlement
from .watch import ClientWatch
from .whole import OpenUpstream, fetch_whole, stream_rewriter

# A check before upstream: raises the refusal (GatewayError, StateUnavailable) or returns.
Check = Callable[[Exchange], Awaitable[None]]
# Where a stream's client bytes go, as they are made (a list of events, maybe several at once).
Send = Callable[[list[bytes]], Awaitable[None]]

STREAM_CAPTURE = 1 << 20  # bytes of a translated stream kept on the flow for mitmweb and -w
COUNT_WAIT_S = 0.5  # a prompt count still running, at most, before a stream that reports it starts


class Turns:
    def __init__(self, *, open_upstream: OpenUpstream, checks: Sequence[Check], observers: Observers,
                 settlement: Settlement, idle_timeout: Callable[[], float]) -> None:
        self.open_upstream = open_upstream
        self.checks = checks
        self.observers = observers
        self.settlement = settlement
        self.idle_timeout = idle_timeout
        self.watch = ClientWatch()
        self.cuts = Cuts()  # what a stopping gateway ends with the client's error (drain.py)

    def received(self, ex: Exchange, body: dict, flow: http.HTTPFlow) -> None:
        ex.body = body
        model = body.get("model")
        ex.requested_model = model if isinstance(model, str) else ""
        ex.stream = body.get("stream") is True
        self.follow(ex, flow)
        self.observers.notify("client_request", ex, flow)

    def follow(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        """The flow that shows `ex` (the engine's upstream_request and the pump's stream_started name it)."""
        self.settlement.flows[ex.id] = flow

    def flow_of(self, ex: Exchange) -> http.HTTPFlow | None:
        return self.settlement.flows.get(ex.id)

    async def translate(self, ex: Exchange) -> None:
        endpoint = ex.endpoint
        assert endpoint is not None and ex.body is not None
        if endpoint.prepare is not None:
            await endpoint.prepare(ex.body, ex)
        ex.chat_body = endpoint.to_chat(ex.body, ex)
        for check in self.checks:
            await check(ex)

    # ---- a whole answer --------------------------------------------------------------------------------

    async def whole(self, ex: Exchange, client: connection.Client) -> http.Response:
        """The whole answer (the endpoint's own fetch, else the engine's), given up as soon as the client
        leaves: the upstream request is cancelled (its connection closed) and the exchange ends 499."""
        task = asyncio.current_task()
        assert task is not None
        self.watch.add(task, client)
        try:
            with self.cuts.running():
                resp, ex.final = await self._whole(ex)
            return resp
        except asyncio.CancelledError:
            if self.watch.discard(task) and task.uncancel() == 0:  # else cancelled by someone else too
                raise GatewayError(499, "Client disconnected before the answer: the upstream request was "
                                        "cancelled.", code="client_disconnected") from None
            raise
        finally:
            if self.watch.discard(task):  # the client left, but the answer was complete before the cancel landed
                task.uncancel()

    async def _whole(self, ex: Exchange) -> tuple[http.Response, dict | None]:
        assert ex.endpoint is not None
        if ex.endpoint.fetch is not None and (answer := await ex.endpoint.fetch(ex, self.open_upstream)) is not None:
            return json_response(200, answer), None
        return await fetch_whole(self.open_upstream, ex)

    # ---- a streamed answer -----------------------------------------------------------------------------

    async def open(self, ex: Exchange) -> UpstreamAnswer:
        """The engine's answer, its head read (refusals and retries are over), the prompt's count finished
        when the stream's first event reports it (until_counted)."""
        with self.cuts.running():
            resp = await self.open_upstream(ex)
            await until_counted(ex)
        return resp

    async def pump(self, ex: Exchange, resp: UpstreamAnswer, send: Send, *, capture: int = 0,
                   translator: StreamTranslator | None = None) -> None:
        """Every upstream event into the client's (the endpoint's stream translator, or the transport's own:
        a WebSocket's JSON frames), sent at once; a silent or broken upstream ends the stream in the client's
        error; the end waits until the endpoint has kept the answer. `capture`: bytes kept for the flow."""
        rw = ex.rewriter = stream_rewriter(ex, capture, translator)
        park_until_kept(ex, rw)
        flow = self.settlement.flows.get(ex.id)
        if flow is not None:
            self.observers.notify("stream_started", ex, flow)
        try:
            with self.cuts.running():
                async for chunk in resp.aiter_raw():  # to its end, past [DONE]: the connection goes back to the pool
                    if chunk and (out := rw(chunk)):
                        await send(out)
        except Stopping as e:  # cut short by a stopping gateway (cut.py): the client's error event
            await send(rw(sse_encode({"error": stream_error(e.message, "gateway_shutting_down")})))
        except UpstreamTimeout:
            await send(rw(sse_encode({"error": stream_error(
                f"Qwen sent nothing for {self.idle_timeout():g} s: the gateway ended the stream "
                "(qwen_stream_idle_timeout).", "stream_idle_timeout")})))
        except ConnectionFailed as e:
            await send(rw(sse_encode({"error": stream_error(f"Qwen broke off the stream: {e}.",
                                                            "upstream_connection_error")})))
        if rw.held is not None:  # the final events wait for the answer to be kept
            await until_kept(ex, "a stream")
        await send(rw(b""))

    def streamed(self, ex: Exchange, *, keep: bool = True) -> dict | None:
        """A pumped stream's outcome on the exchange, the pool told, the endpoint's keepsake stored (unless the
        transport keeps it itself: `keep`); the final object (None when the stream failed)."""
        final = self.settlement.stream_outcome(ex)
        self.settlement.served(ex, final if keep else None)
        return final

    def finish(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        """The record on the flow and the observers told: every turn ends here."""
        self.settlement.finish(flow, ex)


async def until_counted(ex: Exchange) -> None:
    """For an endpoint whose first event reports the prompt's tokens: the count (started off the request path
    when the request arrived, observe/estimator.py) finishes first, at most COUNT_WAIT_S. It has almost always
    finished by the time Qwen answers. (Before tiktoken's encoding is loaded there is no count to wait for: the
    estimator gave the prompt its characters / 4 estimate at once.)"""
    count = ex.estimate
    if count is None or count.done() or ex.endpoint is None or not ex.endpoint.counted_first:
        return
    await asyncio.wait({count}, timeout=COUNT_WAIT_S)
