"""The answer side of forwarding, where the pivot's two halves meet: the upstream's answer made into the
chat form by the upstream that gave it (`ex.upstream`), then into the client's by the client's endpoint
(`ex.endpoint`), whole or streamed. A pass-through pair (`ex.leg`) skips the chat form."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from mitmproxy import connection, http

from . import jsonio, tokens
from .assemble import ChunkAssembler
from .storage.health import StateUnavailable
from .errors import GatewayError, gateway_error
from .exchange import Exchange
from .local import json_response
from .pivot import UpstreamAnswer
from .streaming import StreamRewriter, stream_error

# The engine's `open`: the exchange sent upstream, the answer's head read, its body still arriving.
OpenUpstream = Callable[[Exchange], Awaitable[UpstreamAnswer]]

STREAM_CAPTURE = 1 << 20  # bytes of a translated stream kept on the flow for mitmweb and -w
KEEP_WAIT_S = 10.0  # a kept answer's database write, at most, before its end goes out (stream, turn, whole)
COUNT_WAIT_S = 0.5  # a prompt count still running, at most, before a stream that reports it starts
LOAD_WAIT_S = 2.0  # more, once: the count that loads tiktoken's encoding (~0.4 s; loaded at first need)
log = logging.getLogger("qwen")
CLIENT_WATCH = 0.1  # seconds between looks at a waiting client's connection


def stream_rewriter(ex: Exchange, capture_limit: int = 0) -> StreamRewriter:
    assert ex.endpoint is not None and ex.upstream is not None  # the engine chose the upstream
    if ex.leg.passthrough and ex.endpoint.own_stream is not None:  # the dialect's own events, both ways
        source, own = ex.endpoint.own_stream(ex)
        return StreamRewriter(source, own, capture_limit=capture_limit)
    translator = ex.endpoint.stream_translator(ex)
    assert translator is not None  # only endpoints that stream get here
    return StreamRewriter(ex.upstream.chunks(ex.requested_model or ex.upstream_model), translator,
                          capture_limit=capture_limit)


def start_stream(ex: Exchange, resp: http.Response) -> None:
    """Translate the relayed Qwen stream event by event (mitmproxy's stream callable)."""
    ex.rewriter = stream_rewriter(ex, STREAM_CAPTURE)
    resp.stream = ex.rewriter
    gate = ex.extra.get("final_gate")
    if isinstance(gate, asyncio.Future):
        ex.rewriter.park = lambda: keep_early(ex, gate)
    resp.headers.pop("content-length", None)
    resp.headers["content-type"] = "text/event-stream; charset=utf-8"
    resp.headers["cache-control"] = "no-cache"


def keep_early(ex: Exchange, gate: asyncio.Future) -> None:
    """The stream's final events are parked: the endpoint keeps its final object now (the store's write
    starts) and the relay's gate opens when the write is done (at once when there is nothing to keep). A
    write that failed takes the end back: the client hears the answer was not kept, never that it is done."""
    rw = ex.rewriter
    final = _final_object(rw) if rw is not None else None
    write = None
    if final is not None and ex.endpoint is not None and ex.endpoint.finished is not None:
        ex.extra["kept"] = True  # settle.served does not keep it twice
        try:
            ex.endpoint.finished(ex, final)
        except StateUnavailable as e:
            unkept(ex, e)
        write = ex.extra.get("durable")

    def opened(_: object = None) -> None:
        if isinstance(write, asyncio.Future) and (write.cancelled() or write.exception() is not None):
            failure = None if write.cancelled() else write.exception()
            unkept(ex, failure if isinstance(failure, StateUnavailable) else None)
        if not gate.done():
            gate.set_result(None)

    if isinstance(write, asyncio.Future):
        write.add_done_callback(opened)
    else:
        opened()


def unkept(ex: Exchange, e: StateUnavailable | None) -> None:
    """The parked end of `ex`'s stream becomes the dialect's failure event: its answer was not kept."""
    err = gateway_error(e or StateUnavailable("The gateway could not store the response in time; try again later."))
    ex.stream_error = err.message
    ex.extra["unkept"] = True
    if ex.rewriter is not None:
        ex.rewriter.unkept(stream_error(err.message, code=err.code or "state_unavailable"))


async def until_kept(ex: Exchange, gate: asyncio.Future, what: str) -> None:
    """Wait for a parked stream's answer to be kept (keep_early opens `gate`), at most KEEP_WAIT_S: a write
    still pending then is not reported done (the end becomes a failure), and the end goes out."""
    if gate.done():
        return
    try:
        await asyncio.wait_for(asyncio.shield(gate), KEEP_WAIT_S)
    except TimeoutError:
        log.warning("qwen: %s's end waited %g s for its answer to be kept", what, KEEP_WAIT_S)
        unkept(ex, None)


async def until_counted(ex: Exchange) -> None:
    """For an endpoint whose first event reports the prompt's tokens: the count (started off the request path
    when the request arrived, observe/estimator.py) finishes first, at most COUNT_WAIT_S. It has almost always
    finished by the time Qwen answers; a fast upstream and a long prompt wait for the rest of it (the first such
    stream of the process also for tiktoken's encoding to load)."""
    count = ex.estimate
    if count is None or count.done() or ex.endpoint is None or not ex.endpoint.counted_first:
        return
    loading = not tokens.encoding.cache_info().currsize
    await asyncio.wait({count}, timeout=COUNT_WAIT_S + (LOAD_WAIT_S if loading else 0))


def finish_stream(ex: Exchange, resp: http.Response) -> dict | None:
    """The stream has been sent: keep the client's bytes on the flow, record usage and errors; the final
    object for endpoints that keep it (stored Responses)."""
    rw = ex.rewriter
    assert rw is not None
    resp.raw_content = bytes(rw.captured)
    ex.usage = rw.normalizer.usage
    ex.first_byte_at = rw.first_byte_at
    if rw.error:
        ex.stream_error = str(rw.error.get("message"))
    return _final_object(rw)


def buffered_answer(ex: Exchange, status: int, headers, body: bytes) -> tuple[http.Response, dict | None]:
    """The client's answer to a whole Qwen answer, and the final object (for endpoints that keep it)."""
    assert ex.endpoint is not None
    ctype = headers.get("content-type", "") or ""
    if "event-stream" in ctype and not ex.stream and not ex.leg.passthrough:
        data = assembled(ex, body)  # a whole answer the upstream could only stream (a stream-only model)
        ex.usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
        data = ex.endpoint.from_chat(data, ex)
        return json_response(status, data), data
    if "event-stream" in ctype or (ex.stream and body.lstrip().startswith((b"data:", b"event:"))):
        rw = stream_rewriter(ex)
        out = rw.run(body)
        ex.usage = rw.normalizer.usage
        return http.Response.make(status, out, {"content-type": "text/event-stream; charset=utf-8",
                                                "cache-control": "no-cache"}), _final_object(rw)
    data = upstream_json(body)
    if ex.leg.passthrough:  # the upstream answered in the dialect's own form
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
        data = (ex.endpoint.from_own or ex.endpoint.from_chat)(data, ex)
        ex.usage = ex.usage or usage  # from_own may record it in the chat form the ledger reads
        return json_response(status, data), data
    assert ex.upstream is not None
    data = ex.upstream.answer(data, model=ex.requested_model or ex.upstream_model)
    ex.usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
    data = ex.endpoint.from_chat(data, ex)
    return json_response(status, data), data


def assembled(ex: Exchange, body: bytes) -> dict:
    """A streamed upstream answer as one chat completion, through the upstream's own chunk source; an error
    inside the stream is the client's error, as it is in a whole answer."""
    assert ex.upstream is not None
    assembler = ChunkAssembler()
    rw = StreamRewriter(ex.upstream.chunks(ex.requested_model or ex.upstream_model), assembler)
    rw.run(body)
    if rw.upstream_error is not None:
        raise rw.upstream_error.to_gateway_error()
    if rw.error is not None:
        raise GatewayError(502, str(rw.error.get("message")), code=str(rw.error.get("code") or "upstream_error"))
    return assembler.completion()


def _final_object(rw: StreamRewriter) -> dict | None:
    """A stream translator's final object (the Responses API keeps it), if it builds one."""
    build = getattr(rw.translator, "response", None)
    return build() if callable(build) and not rw.error else None


def upstream_json(body: bytes) -> dict:
    try:
        data = jsonio.loads_answer(body)
    except (ValueError, UnicodeDecodeError):
        raise GatewayError(502, "Qwen sent an answer that is not valid JSON.",
                           code="invalid_upstream_response") from None
    if not isinstance(data, dict):
        raise GatewayError(502, "Qwen sent an unexpected answer.", code="invalid_upstream_response")
    return data


class ClientWatch:
    """Whole answers given up when their client leaves. mitmproxy holds a client's close until the `request`
    hook returns, so the hook would wait for an answer nobody reads; the connection's state says at once
    that the client closed it (EOF). One timer looks at every waiting client each CLIENT_WATCH seconds, and
    only while one waits: a request pays an entry in a dict, not a task and a timer of its own."""

    def __init__(self) -> None:
        self._waiting: dict[asyncio.Task, connection.Client] = {}
        self._left: set[asyncio.Task] = set()  # cancelled here: their client left
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, task: asyncio.Task, client: connection.Client) -> None:
        self._waiting[task] = client
        loop = asyncio.get_running_loop()
        if self._handle is None or self._loop is not loop:
            self._loop, self._handle = loop, loop.call_later(CLIENT_WATCH, self._look)

    def discard(self, task: asyncio.Task) -> bool:
        """Stop watching `task`; whether it was cancelled because its client left."""
        self._waiting.pop(task, None)
        if task in self._left:
            self._left.discard(task)
            return True
        return False

    def _look(self) -> None:
        self._handle = None
        for task, client in list(self._waiting.items()):
            if not client.state & connection.ConnectionState.CAN_READ and task not in self._left:
                self._left.add(task)
                task.cancel()
        if self._waiting and self._loop is not None:
            self._handle = self._loop.call_later(CLIENT_WATCH, self._look)


async def answer_whole(open_upstream: OpenUpstream, ex: Exchange, client: connection.Client,
                       watch: ClientWatch) -> tuple[http.Response, dict | None]:
    """A whole answer (the endpoint's own fetch, else the engine's), given up as soon as the client leaves:
    the upstream request is cancelled (its connection closed, as the relay does for a stream) and the
    exchange ends 499."""
    task = asyncio.current_task()
    assert task is not None
    watch.add(task, client)
    try:
        return await _whole(open_upstream, ex)
    except asyncio.CancelledError:
        if watch.discard(task) and task.uncancel() == 0:  # else cancelled by someone else too: that goes on
            raise GatewayError(499, "Client disconnected before the answer: the upstream request was "
                                    "cancelled.", code="client_disconnected") from None
        raise
    finally:
        if watch.discard(task):  # the client left, but the answer was complete before the cancel landed
            task.uncancel()


async def _whole(open_upstream: OpenUpstream, ex: Exchange) -> tuple[http.Response, dict | None]:
    assert ex.endpoint is not None
    if ex.endpoint.fetch is not None and (whole := await ex.endpoint.fetch(ex, open_upstream)) is not None:
        return json_response(200, whole), None
    return await fetch_whole(open_upstream, ex)


async def fetch_whole(open_upstream: OpenUpstream, ex: Exchange) -> tuple[http.Response, dict | None]:
    """A whole (non-stream) answer: fetched by the engine, translated for the client."""
    resp = await open_upstream(ex)
    try:
        raw = ex.upstream_response_body = await resp.aread()
    finally:
        await resp.aclose()
    return buffered_answer(ex, resp.status_code, resp.headers, raw)


def as_stream_failure(flow: http.HTTPFlow, ex: Exchange) -> None:
    """An error a streaming client acts on as an event of its stream (the Responses API's context overflow is
    a `response.failed`, which Codex turns into its context-full handling), when the endpoint says so."""
    hook = ex.endpoint.stream_failure if ex.endpoint is not None and ex.stream else None
    body = hook(ex) if hook is not None and ex.error is not None else None
    if body is not None:
        flow.response = http.Response.make(200, body, {"content-type": "text/event-stream; charset=utf-8",
                                                       "cache-control": "no-cache"})
        ex.status = 200
