"""The client's request body: decoded with the size limit applied while decoding (mitmproxy's own decoding
has none: a few hundred bytes of zstd can unpack to gigabytes), then parsed once as a JSON object."""

from __future__ import annotations

import asyncio

from mitmproxy import http

from .. import off_loop
from ..errors import GatewayError
from ..jsonio import loads_client
from ..exchange import Exchange
from .access import too_large


def read(flow: http.HTTPFlow, ex: Exchange, limit: int) -> bytes:
    """The decoded body (its size recorded on the exchange); a 413 past `limit`, a 400 if undecodable."""
    try:
        content = decode_body(flow.request.raw_content or b"", content_encoding(flow.request), limit)
    except BodyTooLarge:
        raise too_large(limit) from None
    except ValueError as e:
        raise GatewayError(400, f"The request body could not be decoded: {e}.",
                           code="invalid_content_encoding") from e
    ex.client = ex.client.sized(len(content))
    return content


def content_encoding(req: http.Request) -> str:
    """`req.headers.get("content-encoding", "")`, in one pass over the raw fields (mitmproxy's lookup converts
    and lower-cases every field through its multidict's methods)."""
    return ", ".join(v.decode("utf-8", "surrogateescape") for k, v in req.headers.fields
                     if k.lower() == b"content-encoding")


async def parsed(content: bytes) -> dict:
    """`parse_json`, by a worker thread for a body of off_loop.PARSE_BYTES or more (the event loop serves others)."""
    return parse_json(content) if len(content) < off_loop.PARSE_BYTES else await asyncio.to_thread(parse_json, content)


def parse_json(content: bytes) -> dict:
    try:
        body = loads_client(content or b"")  # a lone surrogate read as U+FFFD (jsonio.py)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise GatewayError(400, "We could not parse the JSON body of your request. (HINT: This likely means "
                                "you aren't using your HTTP library correctly.)", code="invalid_json") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.", code="invalid_request_body")
    return body


def decode_body(raw: bytes, encoding: str, limit: int) -> bytes:
    """The body with its Content-Encoding removed, refused (413) as soon as it grows past `limit`.
    Raises ValueError for an encoding that is unknown or does not decode."""
    out = raw
    for enc in reversed([e.strip().lower() for e in encoding.split(",") if e.strip()]):
        if enc in ("identity", ""):
            continue
        decoder = _DECODERS.get(enc)
        if decoder is None:
            raise ValueError(f"unsupported Content-Encoding {enc!r}")
        out = decoder(out, limit)
    if len(out) > limit:
        raise BodyTooLarge
    return out


class BodyTooLarge(Exception):
    pass


_STEP = 64 * 1024


def _zlib(raw: bytes, limit: int, wbits: int) -> bytes:
    import zlib
    try:
        d = zlib.decompressobj(wbits)
        parts, size, data = [], 0, raw
        while True:
            chunk = d.decompress(data, _STEP)
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            parts.append(chunk)
            data = d.unconsumed_tail
            if not data and (d.eof or not chunk):
                break
        return b"".join(parts)
    except zlib.error as e:
        raise ValueError(str(e)) from e


def _deflate(raw: bytes, limit: int) -> bytes:
    try:
        return _zlib(raw, limit, 15)  # zlib-wrapped, as the RFC says
    except ValueError:
        return _zlib(raw, limit, -15)  # raw deflate, as some clients send


def _brotli(raw: bytes, limit: int) -> bytes:
    import brotli
    d = brotli.Decompressor()
    parts, size, data = [], 0, raw
    try:
        while True:
            chunk = d.process(data, output_buffer_limit=_STEP)
            data = b""  # all input went in with the first call; later calls only drain
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            parts.append(chunk)
            if d.is_finished() or (not chunk and d.can_accept_more_data()):
                return b"".join(parts)
    except brotli.error as e:
        raise ValueError(str(e)) from e


def _zstd(raw: bytes, limit: int) -> bytes:
    import io

    import zstandard
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw))
        out = reader.read(limit + 1)
    except zstandard.ZstdError as e:
        raise ValueError(str(e)) from e
    if len(out) > limit:
        raise BodyTooLarge
    return out


_DECODERS = {"gzip": lambda raw, limit: _zlib(raw, limit, 31), "x-gzip": lambda raw, limit: _zlib(raw, limit, 31),
             "deflate": _deflate, "br": _brotli, "zstd": _zstd}


# ---- where requests come from: browsers and foreign hosts ----------------------------------------------
