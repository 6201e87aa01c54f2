"""The answer side of forwarding: Qwen's answer turned into the client's, whole or streamed."""

from __future__ import annotations

import asyncio
import dataclasses

from mitmproxy import http

from . import jsonio
from .api import embeddings
from .api.chat import qwen_to_chat
from .api.chat_stream import ChunkNormalizer
from .errors import GatewayError
from .exchange import Exchange
from .local import json_response
from .streaming import StreamRewriter
from .upstream.engine import UpstreamEngine

STREAM_CAPTURE = 1 << 20  # bytes of a translated stream kept on the flow for mitmweb and -w


def stream_rewriter(ex: Exchange, capture_limit: int = 0) -> StreamRewriter:
    assert ex.endpoint is not None
    translator = ex.endpoint.stream_translator(ex)
    assert translator is not None  # only endpoints that stream get here
    return StreamRewriter(ChunkNormalizer(ex.requested_model or ex.upstream_model), translator,
                          capture_limit=capture_limit)


def start_stream(ex: Exchange, resp: http.Response) -> None:
    """Translate the relayed Qwen stream event by event (mitmproxy's stream callable)."""
    ex.rewriter = stream_rewriter(ex, STREAM_CAPTURE)
    resp.stream = ex.rewriter
    resp.headers.pop("content-length", None)
    resp.headers["content-type"] = "text/event-stream; charset=utf-8"
    resp.headers["cache-control"] = "no-cache"


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
    if "event-stream" in ctype or (ex.stream and body.lstrip().startswith(b"data:")):
        rw = stream_rewriter(ex)
        out = rw.run(body)
        ex.usage = rw.normalizer.usage
        return http.Response.make(status, out, {"content-type": "text/event-stream; charset=utf-8",
                                                "cache-control": "no-cache"}), _final_object(rw)
    data = upstream_json(body)
    if ex.endpoint.translated:
        data = qwen_to_chat(data, model=ex.requested_model or ex.upstream_model)
    ex.usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
    data = ex.endpoint.from_chat(data, ex)
    return json_response(status, data), data


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


async def fetch_whole(engine: UpstreamEngine, ex: Exchange) -> tuple[http.Response, dict | None]:
    """A whole (non-stream) answer: fetched by the engine, translated for the client."""
    resp = await engine.open(ex)
    try:
        raw = ex.upstream_response_body = await resp.aread()
    finally:
        await resp.aclose()
    return buffered_answer(ex, resp.status_code, resp.headers, raw)


async def fetch_embeddings(engine: UpstreamEngine, ex: Exchange, batches: list[dict]) -> http.Response:
    """More inputs than Qwen takes at once: the batches go upstream concurrently, each with its own
    credential and retries; the answers are put back together in order."""
    ex.notes.append(f"{sum(len(b['input']) for b in batches)} inputs sent as {len(batches)} requests of at "
                    f"most {embeddings.BATCH} (Qwen's limit)")
    parts = [dataclasses.replace(ex, chat_body=b, tried=[], retries=[], notes=[], extra={}) for b in batches]

    async def fetch(part: Exchange) -> dict:
        resp = await engine.open(part)
        try:
            return upstream_json(await resp.aread())
        finally:
            await resp.aclose()

    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(fetch(p)) for p in parts]
    except* GatewayError as group:
        raise group.exceptions[0] from None
    first = parts[0]
    ex.cred, ex.upstream_model, ex.upstream_url = first.cred, first.upstream_model, first.upstream_url
    ex.upstream_headers, ex.upstream_status, ex.upstream_body = (first.upstream_headers, first.upstream_status,
                                                                 first.upstream_body)
    for p in parts:
        ex.tried += [a for a in p.tried if a not in ex.tried]
        ex.retries += p.retries
    answer = embeddings.merge_answers([t.result() for t in tasks], model=ex.requested_model or None,
                                      encoding_format=(ex.body or {}).get("encoding_format"))
    ex.usage = answer.get("usage")
    return json_response(200, answer)


def as_stream_failure(flow: http.HTTPFlow, ex: Exchange) -> None:
    """An error a streaming client acts on as an event of its stream (the Responses API's context overflow is
    a `response.failed`, which Codex turns into its context-full handling), when the endpoint says so."""
    hook = ex.endpoint.stream_failure if ex.endpoint is not None and ex.stream else None
    body = hook(ex) if hook is not None and ex.error is not None else None
    if body is not None:
        flow.response = http.Response.make(200, body, {"content-type": "text/event-stream; charset=utf-8",
                                                       "cache-control": "no-cache"})
        ex.status = 200
