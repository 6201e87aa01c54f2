"""The relay: how a streamed answer reaches mitmproxy, which streams it to the client.

mitmproxy can only stream a response that comes from a server connection; an answer an addon makes is
sent whole. So a streamed exchange is pointed at this small HTTP/1.1 server, which runs in the addon's
own event loop and is reached through an in-process connection (inproc.py: no socket; on a mitmproxy whose
server connect the seam was not written against, it listens on 127.0.0.1, as it did before, at the cost of a
socket hop per event and a TCP connect per stream). It serves only
exchanges the gateway registered, each once, named by a random token. It is the HTTP transport of a turn
(turn/runner.py): the turn opens the engine's answer (credential, pooled connection, retries before the first
byte) and pumps it, each upstream event translated into the client's at once, which the relay writes to
mitmproxy chunked. A refusal before the first byte is written whole (the settlement puts it in the
client's format); an answer that is not a stream after all is written as it came (and translated whole).
When mitmproxy closes the connection (the client went away), the turn's upstream request is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from ..errors import ConnectionFailed, GatewayError, UpstreamTimeout
from ..exchange import Exchange
from ..loopback import LoopbackServer
from ..pivot import UpstreamAnswer
from ..turn import TurnRunner
from . import inproc
from .pipe import PipeReader

log = logging.getLogger("qwen")

TOKEN_HEADER = "x-qwen-relay"
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            413: "Payload Too Large", 429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}


STREAM_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\n"
               b"transfer-encoding: chunked\r\n\r\n")


class LoopbackRelay(LoopbackServer):
    def __init__(self, runner: TurnRunner, *, capture: int = 0) -> None:
        super().__init__()
        self.runner = runner
        self.capture = capture  # bytes of each translated stream kept on its flow

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
                resp = await self.runner.open(ex)
            except GatewayError:
                raise
            except Exception as e:  # fail closed: the client gets an error, never a broken connection
                log.exception("qwen: the upstream request failed")
                raise GatewayError(500, f"The gateway failed: {type(e).__name__}.") from e
        except GatewayError as e:
            ex.relay_error = e  # the client's format is applied when the answer is settled
            ex.fail(e.status, e.code, e.message)
            await _write_whole(writer, e.status, e.to_bytes(), e.headers)
            return True
        try:
            if resp.status_code == 200 and "event-stream" in resp.headers.get("content-type", ""):
                writer.write(STREAM_HEAD)

                async def send(outs: list[bytes]) -> None:
                    data = b"".join(outs)
                    if data:
                        writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                        await writer.drain()

                await self.runner.pump(ex, resp, send, capture=self.capture)
            else:
                await _copy(resp, writer)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        finally:
            await resp.aclose()


async def _copy(resp: UpstreamAnswer, writer: asyncio.StreamWriter) -> None:
    """An answer that is not a stream, as it came (the settlement translates it whole)."""
    ctype = resp.headers.get("content-type", "application/json")
    writer.write(f"HTTP/1.1 {resp.status_code} {_REASONS.get(resp.status_code, 'OK')}\r\n"
                 f"content-type: {ctype}\r\ntransfer-encoding: chunked\r\n\r\n".encode("latin-1"))
    try:
        async for chunk in resp.aiter_raw():
            if chunk:
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
    except (UpstreamTimeout, ConnectionFailed):
        pass  # what came is what the settlement reads


async def _write_whole(writer: asyncio.StreamWriter, status: int, body: bytes, headers: dict[str, str],
                       *, close: bool = False) -> None:
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\ncontent-type: application/json\r\n"
                 f"content-length: {len(body)}\r\n{extra}{'connection: close' + chr(13) + chr(10) if close else ''}"
                 "\r\n".encode("latin-1") + body)
    await writer.drain()
