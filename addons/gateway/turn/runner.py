"""The turn: one client request run from its body to the settled outcome, the same way for every transport —
a POST answered whole (mitmproxy's flow) or streamed (the relay), a `response.create` on a Responses WebSocket,
a background response. `run` is the whole choreography:

    translate  the endpoint's own preparation (a stored conversation loaded, its store known to take the
               answer), its client -> chat translation, then each check before upstream (the drain, the context
               guard, a named key's budgets and rate limits): a refusal is raised before anything goes upstream
    whole      the engine's answer (or the endpoint's own fetch), translated whole, handed to the transport
    stream     the engine's answer opened (retries before the first byte); each upstream event translated into
               the client's and handed to the transport at once; the stream's end held until the endpoint has
               kept the answer (kept_before_end.py)
    served     the outcome on the exchange: usage, errors, the pool told, the endpoint's keepsake stored
    failure    whatever ended the turn before its answer, mapped once to the client's error (errors.failure)
               and handed to the transport

`received` (the client's body: the model asked, stream or not, the observers' `client_request`) comes first,
from the ingress: a transport is chosen by it. A transport (`Transport`, turn/__init__.py) only moves bytes and is
told the outcome; it has no `except` of its own for the turn's failures. What a turn needs is handed in
(wiring.py): the engine's `open`, the checks, the observers and the settlement.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from mitmproxy import http

from ..dispatch import Observers
from ..errors import Ended, GatewayError, failure
from ..exchange import Exchange
from ..heap import Trimmer
from ..local_answers import json_response
from ..interfaces import StreamTranslator, UpstreamAnswer
from .stream_rewriter import stream_error
from .stream_end import relayed
from . import Send, Transport, outcome
from .stopping import Interruptible
from .kept_before_end import hold_end_until_kept, until_kept
from .settlement import Settlement
from .client_watch import ClientWatch
from .continuation import ReadBefore, Resume, going_on
from .whole_answer import OpenUpstream, as_stream_failure, fetch_whole, stream_rewriter, translated

log = logging.getLogger("qwen")

# A check before upstream: raises the refusal (GatewayError, StateUnavailable) or returns.
Check = Callable[[Exchange], Awaitable[None]]

COUNT_WAIT_S = 0.5  # a prompt count still running, at most, before a stream that reports it starts
LEFT = "Client disconnected before the answer: the upstream request was cancelled."


class Turns:
    def __init__(self, *, open_upstream: OpenUpstream, checks: Sequence[Check], observers: Observers,
                 settlement: Settlement, idle_timeout: Callable[[], float], resume_upstream: Resume | None = None,
                 read_before: ReadBefore | None = None) -> None:
        self.open_upstream = open_upstream
        self.resume_upstream = resume_upstream  # the engine's continuation of a broken stream (turn/continuation.py)
        self.read_before = read_before  # and the cache doctor's estimate of what a broken request read
        self.checks = checks
        self.observers = observers
        self.settlement = settlement
        self.idle_timeout = idle_timeout
        self.watch = ClientWatch()
        self.cuts = Interruptible()  # what a stopping gateway ends with the client's error (turn/drain.py)
        self.heap = Trimmer()  # the C heap given back after a large request (heap.py)

    def received(self, ex: Exchange, body: dict, flow: http.HTTPFlow) -> None:
        ex.body = body
        model = body.get("model")
        ex.requested_model = model if isinstance(model, str) else ""
        streams = ex.endpoint.streams if ex.endpoint is not None else None
        ex.stream = streams(body) if streams is not None else body.get("stream") is True  # the turn's alone
        self.follow(ex, flow)
        self.observers.notify("client_request", ex, flow)

    def follow(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        """The flow that shows `ex` (the engine's upstream_request and the pump's stream_started name it)."""
        self.settlement.flows[ex.id] = flow

    def flow_of(self, ex: Exchange) -> http.HTTPFlow | None:
        return self.settlement.flows.get(ex.id)

    # ---- the choreography ------------------------------------------------------------------------------

    async def run(self, ex: Exchange, transport: Transport) -> None:
        """The turn of a received exchange, to its end, through `transport` (module docstring)."""
        final: dict | None = None
        try:
            with self.cuts.running(ex.key.name):
                if not ex.turn.translated:
                    await self.translate(ex)
                if ex.stream:
                    final = await self._stream(ex, transport)
                else:
                    answer, final = await self._whole(ex, transport)
                    self.settlement.served(ex, None if transport.keeps else final)
                    await carried(transport, ex, answer)
        except asyncio.CancelledError:
            if (fact := transport.cancelled(ex)) is not None:
                (outcome.client_left if fact.client_left else outcome.stream_broken)(ex, fact.why)
            raise
        except Exception as caught:
            err = failure(caught)
            if err.status == 500 and not isinstance(caught, GatewayError):
                log.exception("qwen: a turn failed")
            ex.fail(err.status, err.code, err.message)
            if await transport.refuse(ex, err):
                outcome.stream_broken(ex, err.message)  # the error went out as the dialect's stream events
        finally:
            transport.ended(ex, final)
            self.heap.ended(ex.client.size, (ex.cache_print, ex.count.task))  # once they are done
            if transport.ends_record:
                outcome.ended(ex)  # served, unless it failed before
                if (flow := self.flow_of(ex)) is not None:
                    self.finish(flow, ex)

    async def translate(self, ex: Exchange) -> None:
        endpoint = ex.endpoint
        assert endpoint is not None and ex.body is not None
        if endpoint.prepare is not None:
            await endpoint.prepare(ex.body, ex)
        if endpoint.off_loop is not None and endpoint.off_loop(ex.body):
            ex.chat_body = await asyncio.to_thread(endpoint.to_chat, ex.body, ex)
        else:
            ex.chat_body = endpoint.to_chat(ex.body, ex)
        for check in self.checks:
            await check(ex)
        ex.turn.translated = True

    def refusal(self, ex: Exchange, err: GatewayError) -> http.Response:
        """An HTTP client's answer to a turn that failed: the error in its dialect's format, or the stream failure
        the endpoint makes of it (a Responses stream's context overflow is a `response.failed` Codex acts on)."""
        resp = self.settlement.formats.error(err, ex)
        return as_stream_failure(resp, ex)

    # ---- a whole answer --------------------------------------------------------------------------------

    async def _whole(self, ex: Exchange, transport: Transport) -> tuple[http.Response, dict | None]:
        """The whole answer (the endpoint's own fetch, else the engine's); given up as soon as a watched client
        leaves: the upstream request is cancelled (its connection closed) and the exchange ends 499."""
        client = transport.client
        task = asyncio.current_task()
        if client is None or task is None:
            return await self._fetch(ex)
        self.watch.add(task, client)
        try:
            return await self._fetch(ex)
        except asyncio.CancelledError:
            if self.watch.discard(task) and task.uncancel() == 0:  # else cancelled by someone else too
                raise GatewayError(499, LEFT, code="client_disconnected") from None
            raise
        finally:
            if self.watch.discard(task):  # the client left, but the answer was complete before the cancel landed
                task.uncancel()

    async def _fetch(self, ex: Exchange) -> tuple[http.Response, dict | None]:
        assert ex.endpoint is not None
        if ex.endpoint.fetch is not None and (got := await ex.endpoint.fetch(ex, self.open_upstream)) is not None:
            answer, ex.result.usage = got
            return json_response(200, answer), None
        return await fetch_whole(self.open_upstream, ex)

    # ---- a streamed answer -----------------------------------------------------------------------------

    async def _stream(self, ex: Exchange, transport: Transport) -> dict | None:
        """The engine's answer, its head read (refusals and retries are over), the prompt's count finished when
        the stream's first event reports it (until_counted), pumped through the transport; an answer that is
        not a stream after all is translated whole."""
        resp = await self.open_upstream(ex)
        try:
            if resp.status_code != 200 or "event-stream" not in resp.headers.get("content-type", ""):
                answer, final = translated(ex, resp.status_code, resp.headers, await resp.aread())
                self.settlement.served(ex, None if transport.keeps else final)
                await carried(transport, ex, answer)
                return final
            await until_counted(ex)
            await transport.begin(ex)
            await self.pump(ex, resp, transport.send, capture=transport.capture, translator=transport.translator(ex))
        finally:
            await resp.aclose()
        return self.streamed(ex, keep=not transport.keeps)

    async def pump(self, ex: Exchange, resp: UpstreamAnswer, send: Send, *, capture: int = 0,
                   translator: StreamTranslator | None = None) -> None:
        """Every upstream event into the client's (the endpoint's stream translator, or the transport's own:
        a WebSocket's JSON frames), sent at once; a silent or broken upstream ends the stream in the client's
        error; the end waits until the endpoint has kept the answer. `capture`: bytes kept for the flow."""
        going = going_on(ex, self.resume_upstream, self.settlement.pool, self.read_before)  # None: a break ends it
        rw = ex.turn.rewriter = stream_rewriter(ex, capture, translator, going)
        hold_end_until_kept(ex, rw)
        flow = self.settlement.flows.get(ex.id)
        if flow is not None:
            self.observers.notify("stream_started", ex, flow)
        answer: UpstreamAnswer | None = resp
        try:
            with self.cuts.running(ex.key.name):
                while answer is not None:
                    await relayed(answer, rw, send, self.idle_timeout())
                    answer = await going.next(rw, send) if going is not None and rw.broken is not None else None
        except Ended as e:  # cut short by a stopping gateway or its key's revocation: the client's error event
            await send(rw.ended(stream_error(e.message, e.code or "", e.type)))
        finally:
            if going is not None:
                await going.close()
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
    count = ex.count.task
    if count is None or count.done() or ex.endpoint is None or not ex.endpoint.counted_first:
        return
    await asyncio.wait({count}, timeout=COUNT_WAIT_S)


NO_STREAM = "Qwen answered with no stream."


async def carried(transport: Transport, ex: Exchange, answer: http.Response) -> None:
    """A whole answer through the transport; one that cannot carry it (a stream's: a WebSocket turn, a background
    run) leaves the decision here, once: the exchange ends 502, through the transport's refusal."""
    if not await transport.whole(ex, answer):
        raise GatewayError(502, NO_STREAM, code="invalid_upstream_response")
