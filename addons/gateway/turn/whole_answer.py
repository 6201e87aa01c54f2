"""A whole answer, where the chat form's two halves meet: the upstream's answer made into the chat form by the
upstream that gave it (`ex.attempt.upstream`), then into the client's by the client's endpoint (`ex.endpoint`). A
pass-through pair (`ex.attempt.leg`) skips the chat form; an upstream model that only streams is assembled into one
chat completion first."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from mitmproxy import http

from .. import jsonio
from .assembler import ChunkAssembler
from ..errors import GatewayError
from ..exchange import Exchange
from ..local_answers import json_response
from ..interfaces import StreamTranslator, UpstreamAnswer
from .stream_rewriter import StreamRewriter
from .kept_before_end import final_object
from .stream_end import relayed

if TYPE_CHECKING:
    from .continuation import Continuation

# The engine's `open`: the exchange sent upstream, the answer's head read, its body still arriving.
OpenUpstream = Callable[[Exchange], Awaitable[UpstreamAnswer]]


def stream_rewriter(ex: Exchange, capture_limit: int = 0, translator: StreamTranslator | None = None,
                    going: Continuation | None = None) -> StreamRewriter:
    """The upstream's chunk source and the client's stream translator for `ex` (or `translator`), joined; `going`:
    the turn may continue the answer (turn/continuation.py), so a break is held and the source is what it follows."""
    assert ex.endpoint is not None and ex.attempt.upstream is not None  # the engine chose the upstream
    if ex.attempt.leg.passthrough and ex.endpoint.own_stream is not None:  # the dialect's own events, both ways
        source, own = ex.endpoint.own_stream(ex)
        return StreamRewriter(source, own, capture_limit=capture_limit)
    translator = translator or ex.endpoint.stream_translator(ex)
    assert translator is not None  # only endpoints that stream get here
    n = (ex.chat_body or {}).get("n")
    chunks = ex.attempt.upstream.chunks(ex.answered_as)
    return StreamRewriter(going.source(chunks) if going is not None else chunks, translator,
                          capture_limit=capture_limit, choices=n if isinstance(n, int) and n > 1 else 1,
                          holds_breaks=going is not None)


async def fetch_whole(open_upstream: OpenUpstream, ex: Exchange) -> tuple[http.Response, dict | None]:
    """A whole (non-stream) answer: fetched by the engine, translated for the client."""
    resp = await open_upstream(ex)
    try:
        streamed = resp.status_code == 200 and "event-stream" in (resp.headers.get("content-type", "") or "") \
            and not ex.attempt.leg.passthrough
        raw = await read_stream(resp, ex) if streamed else await resp.aread()
        ex.attempt.answered(raw)
    finally:
        await resp.aclose()
    return translated(ex, resp.status_code, resp.headers, raw)


class _Kept:
    """An upstream answer whose body's bytes are kept as they are read."""

    def __init__(self, resp: UpstreamAnswer) -> None:
        self.resp, self.body = resp, bytearray()
        self.status_code, self.headers = resp.status_code, resp.headers

    async def aread(self) -> bytes:
        return b"".join([chunk async for chunk in self.aiter_raw()])

    async def aclose(self) -> None:
        await self.resp.aclose()

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        async for chunk in self.resp.aiter_raw():
            self.body += chunk
            yield chunk


async def read_stream(resp: UpstreamAnswer, ex: Exchange) -> bytes:
    """A whole answer the upstream could only stream, read as a stream is: to its end, or as soon as the answer is
    whole (stream_end.py) — never held by a body Qwen keeps open after its answer. The bytes read, translated after."""
    assert ex.attempt.upstream is not None
    kept = _Kept(resp)
    n = (ex.chat_body or {}).get("n")
    probe = StreamRewriter(ex.attempt.upstream.chunks(ex.answered_as), _Nothing(),
                           choices=n if isinstance(n, int) and n > 1 else 1)
    await relayed(kept, probe, _ignore)  # a break or a cut: the bytes so far, which the translation says were cut
    return bytes(kept.body)


class _Nothing:
    """A stream translator that writes nothing (the probe decides only where the stream ends)."""

    def feed(self, chunk: object) -> list[bytes]:
        return []

    def finish(self) -> list[bytes]:
        return []

    def fail(self, error: dict) -> list[bytes]:
        return []


async def _ignore(outs: list[bytes]) -> None:
    return None


def translated(ex: Exchange, status: int, headers, body: bytes) -> tuple[http.Response, dict | None]:
    """The client's answer to a whole upstream answer, and the final object (for endpoints that keep it)."""
    assert ex.endpoint is not None
    ctype = headers.get("content-type", "") or ""
    if "event-stream" in ctype and not ex.stream and not ex.attempt.leg.passthrough:
        data = assembled(ex, body)  # a whole answer the upstream could only stream (a stream-only model)
        ex.result.usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
        data = ex.endpoint.from_chat(data, ex)
        return json_response(status, data), data
    if "event-stream" in ctype or (ex.stream and body.lstrip().startswith((b"data:", b"event:"))):
        rw = stream_rewriter(ex)
        out = rw.run(body)
        ex.result.usage = rw.normalizer.usage
        return http.Response.make(status, out, {"content-type": "text/event-stream; charset=utf-8",
                                                "cache-control": "no-cache"}), final_object(rw)
    data = upstream_json(body)
    if ex.attempt.leg.passthrough:  # the upstream answered in the dialect's own form
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
        if ex.endpoint.from_own is not None:  # its usage read in the chat form the ledger reads, when it reads one
            data, read = ex.endpoint.from_own(data, ex)
            usage = read or usage
        else:
            data = ex.endpoint.from_chat(data, ex)
        ex.result.usage = usage
        return json_response(status, data), data
    assert ex.attempt.upstream is not None
    data = ex.attempt.upstream.answer(data, model=ex.answered_as)
    ex.result.usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
    data = ex.endpoint.from_chat(data, ex)
    return json_response(status, data), data


def assembled(ex: Exchange, body: bytes) -> dict:
    """A streamed upstream answer as one chat completion, through the upstream's own chunk source; an error
    inside the stream is the client's error, as it is in a whole answer."""
    assert ex.attempt.upstream is not None
    assembler = ChunkAssembler()
    rw = StreamRewriter(ex.attempt.upstream.chunks(ex.answered_as), assembler)
    rw.run(body)
    if rw.upstream_error is not None:
        raise rw.upstream_error.to_gateway_error()
    if rw.error is not None:
        raise GatewayError(502, str(rw.error.get("message")), code=str(rw.error.get("code") or "upstream_error"))
    return assembler.completion()


def upstream_json(body: bytes) -> dict:
    try:
        data = jsonio.loads_answer(body)
    except (ValueError, UnicodeDecodeError):
        raise GatewayError(502, "Qwen sent an answer that is not valid JSON.",
                           code="invalid_upstream_response") from None
    if not isinstance(data, dict):
        raise GatewayError(502, "Qwen sent an unexpected answer.", code="invalid_upstream_response")
    return data


def as_stream_failure(resp: http.Response, ex: Exchange) -> http.Response:
    """An error a streaming client acts on as an event of its stream (the Responses API's context overflow is
    a `response.failed`, which Codex turns into its context-full handling), when the endpoint says so; else
    `resp` (the error in the client's format) as it is."""
    hook = ex.endpoint.stream_failure if ex.endpoint is not None and ex.stream else None
    body = hook(ex) if hook is not None and ex.result.error is not None else None
    if body is None:
        return resp
    ex.result.status = 200
    ex.result.stream_error = ex.result.error.message if ex.result.error is not None else None  # said in its events
    return http.Response.make(200, body, {"content-type": "text/event-stream; charset=utf-8",
                                          "cache-control": "no-cache"})
