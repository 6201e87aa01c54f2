"""The relay: how a streamed answer from the engine reaches mitmproxy's stream callable.

mitmproxy can only stream a response that comes from a server connection; an answer an addon makes is
sent whole. So a streamed exchange is pointed at this small HTTP/1.1 server, which runs in the addon's
own event loop and is reached through an in-process connection (inproc.py: no socket; on a mitmproxy whose
server connect the seam was not written against, it listens on 127.0.0.1, as it did before, at the cost of a
socket hop per event and a TCP connect per stream). It serves only
exchanges the gateway registered, each once, named by a random token; it asks the engine for the answer
(credential, pooled connection, retries before the first byte) and writes the upstream bytes to mitmproxy
as they arrive, chunked.

Faults become SSE error events the stream callable turns into the client's error format: an upstream
silent for the idle limit, or one that breaks off. When mitmproxy closes the connection (the client
went away), the upstream request is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable

from ..errors import ConnectionFailed, GatewayError, UpstreamTimeout
from ..exchange import Exchange
from ..forward import until_counted, until_kept
from ..loopback import LoopbackServer
from ..pivot import UpstreamAnswer
from ..sse import encode
from ..streaming import stream_error
from . import inproc
from .pipe import PipeReader

log = logging.getLogger("qwen")

TOKEN_HEADER = "x-qwen-relay"
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            413: "Payload Too Large", 429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}


class LoopbackRelay(LoopbackServer):
    def __init__(self, open_upstream: Callable[[Exchange], Awaitable[UpstreamAnswer]], *,
                 idle_timeout: Callable[[], float]) -> None:
        super().__init__()
        self.open_upstream = open_upstream
        self.idle_timeout = idle_timeout

    async def start(self) -> tuple[str, int]:
        if self.address is None:
            self.address = inproc.listen(self._tracked)
        return self.address or await super().start()  # 127.0.0.1 when mitmproxy cannot connect in-process

    def stop(self) -> None:
        inproc.close(self.address)
        super().stop()

    def expect(self, ex: Exchange) -> str:
        """Register an exchange; the token is the only way to have it served (once)."""
        token = secrets.token_urlsafe(24)
        self._pending[token] = ex
        return token

    def forget(self, token: str | None) -> None:
        if token:
            self._pending.pop(token, None)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one_request(reader, writer):
                pass
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        except Exception:
            log.exception("qwen: relay connection failed")
        finally:
            writer.close()

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; whether the connection stays open for the next."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False  # closed between requests
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        if length:
            await reader.readexactly(length)  # the client's body, kept on the flow for display; not needed here
        ex = self._pending.pop(headers.get(TOKEN_HEADER, ""), None)
        if ex is None:
            err = GatewayError(403, "This relay serves only requests the gateway prepared.", code="relay_refused")
            await _write_whole(writer, err.status, err.to_bytes(), err.headers, close=True)
            return False
        return await self._serve(ex, reader, writer)

    async def _serve(self, ex: Exchange, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        # mitmproxy sends nothing more on this connection until the answer is complete: its end of the
        # connection closing means the client went away, and the upstream request is cancelled (this task is:
        # no task of its own for the upstream request, the pump or the watch)
        if not isinstance(reader, PipeReader):  # over TCP (start): a client gone is noticed when a write fails
            return await self._answer(ex, writer)
        task = asyncio.current_task()
        assert task is not None
        if reader.at_eof():
            return False  # closed already
        gone: list[bool] = []

        def closed() -> None:
            gone.append(True)
            task.cancel()

        reader.on_eof = closed
        try:
            return await self._answer(ex, writer)
        except asyncio.CancelledError:
            if gone and task.uncancel() == 0:
                return False
            raise
        finally:
            reader.on_eof = None

    async def _answer(self, ex: Exchange, writer: asyncio.StreamWriter) -> bool:
        try:
            try:
                resp = await self.open_upstream(ex)
            except GatewayError:
                raise
            except Exception as e:  # fail closed: the client gets an OpenAI error, never a broken connection
                log.exception("qwen: the upstream request failed")
                raise GatewayError(500, f"The gateway failed: {type(e).__name__}.") from e
        except GatewayError as e:
            ex.extra["relay_error"] = e  # the client's format is applied when the answer is settled
            ex.fail(e.status, e.code, e.message)
            await _write_whole(writer, e.status, e.to_bytes(), e.headers)
            return True
        try:
            await until_counted(ex)
            return await self._pump(ex, resp, writer)
        finally:
            await resp.aclose()

    async def _pump(self, ex: Exchange, resp: UpstreamAnswer, writer: asyncio.StreamWriter) -> bool:
        gate = ex.extra.get("final_gate")
        ctype = resp.headers.get("content-type", "application/json")
        writer.write(f"HTTP/1.1 {resp.status_code} {_REASONS.get(resp.status_code, 'OK')}\r\n"
                     f"content-type: {ctype}\r\ntransfer-encoding: chunked\r\n\r\n".encode("latin-1"))
        try:
            async for chunk in resp.aiter_raw():
                if chunk:
                    writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    await writer.drain()
        except UpstreamTimeout:
            _write_chunk(writer, _error_event(f"Qwen sent nothing for {self.idle_timeout():g} s: the gateway "
                                              "ended the stream (qwen_stream_idle_timeout).", "stream_idle_timeout"))
        except ConnectionFailed as e:
            _write_chunk(writer, _error_event(f"Qwen broke off the stream: {e}.",
                                              "upstream_connection_error"))
        if isinstance(gate, asyncio.Future) and resp.status_code == 200 and "event-stream" in ctype:
            # the answer is being kept (a shared database): the stream's end, and with it the client's final
            # events, waits for the write
            await until_kept(ex, gate, "a stream")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


def _error_event(message: str, code: str) -> bytes:
    return encode({"error": stream_error(message, code=code)})


def _write_chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(b"%x\r\n%s\r\n" % (len(data), data))


async def _write_whole(writer: asyncio.StreamWriter, status: int, body: bytes, headers: dict[str, str],
                       *, close: bool = False) -> None:
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\ncontent-type: application/json\r\n"
                 f"content-length: {len(body)}\r\n{extra}{'connection: close' + chr(13) + chr(10) if close else ''}"
                 "\r\n".encode("latin-1") + body)
    await writer.drain()
