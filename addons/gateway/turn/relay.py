"""The relay: how a streamed answer reaches mitmproxy, which streams it to the client — and the gateway's one
server, which also serves the Responses WebSocket's upgrades (socket.py: `expect_handler`).

mitmproxy can only stream a response that comes from a server connection; an answer an addon makes is
sent whole. So a streamed exchange is pointed at this small HTTP/1.1 server, which runs in the addon's
own event loop and is reached through an in-process connection (in_process.py: no socket; on a mitmproxy whose
server connect the seam was not written against, it listens on 127.0.0.1, as it did before, at the cost of a
socket hop per event and a TCP connect per stream). It serves only
exchanges the gateway registered, each once, named by a random token. It is the HTTP transport of a turn
(turn/runner.py): the turn opens the engine's answer (credential, pooled connection, retries before the first
byte) and pumps it, each upstream event translated into the client's at once, which the relay writes to
mitmproxy chunked (`RelayStream`, the turn's transport). A refusal before the first byte, and an answer that
was not a stream after all, are written whole, in the client's format, as the turn made them.
When mitmproxy closes the connection (the client went away), the turn's upstream request is cancelled.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets

from collections.abc import Awaitable, Callable

from mitmproxy import connection, http

from ..errors import GatewayError
from ..exchange import Exchange
from ..local_answers import error_response
from . import TurnRunner, in_process
from .pipe import PipeReader

log = logging.getLogger("qwen")

# What serves one prepared request: (its head, its headers by lower-case name, the connection's streams) -> whether
# the connection stays open for the next request
Handler = Callable[[bytes, dict[str, str], asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]

TOKEN_HEADER = "x-qwen-relay"
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            413: "Payload Too Large", 429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}


STREAM_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\n"
               b"transfer-encoding: chunked\r\n\r\n")


MAX_HEAD = 64 * 1024
STREAM_CAPTURE = 1 << 20  # bytes of a translated stream kept on its flow, when something reads them
END_WAIT_S = 5.0  # at shutdown: how long connections in progress get to end


def stream_capture(master, opts, *, debug_log: bool) -> int:
    """The bytes of each stream to keep on its flow: STREAM_CAPTURE when something reads them — mitmweb or
    mitmproxy's console (their flow `view`), a flow file (-w: save_stream_file), mitmdump printing bodies
    (flow_detail 3 and up), the debug log — else 0: under plain mitmdump nothing does, and every event's bytes
    were copied into a buffer thrown away with the flow. Asked when options change, not per stream."""
    shown = master.addons.get("view") is not None or bool(getattr(opts, "save_stream_file", None))
    printed = getattr(opts, "flow_detail", 0) >= 3
    return STREAM_CAPTURE if shown or printed or debug_log else 0


class LoopbackRelay:
    """The gateway's one server: in-process (in_process.py) or, without the seam, on 127.0.0.1 and a random port;
    started at first use (once, however many callers ask at the same time), stopped with the addon."""

    def __init__(self, runner: TurnRunner, *, capture: int = 0) -> None:
        self.runner = runner
        self.capture = capture  # bytes of each translated stream kept on its flow
        self.address: tuple[str, int] | None = None
        self._server: asyncio.Server | None = None
        self._starting: asyncio.Future | None = None
        self._pending: dict[str, Handler] = {}  # single-use token -> what serves its request
        self._serving: set[asyncio.Task] = set()  # each connection's task, until it ends

    async def _tracked(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()  # each connection runs in a task of its own
        serving = {task} if task is not None else set()
        self._serving |= serving
        try:
            await self._connection(reader, writer)
        finally:
            self._serving -= serving

    async def ended(self) -> None:
        """At shutdown, once mitmproxy has closed its side: until every connection in progress has ended.
        A connection task asyncio cancels at exit prints a CancelledError traceback (Python 3.12.1's
        StreamReaderProtocol asks the cancelled task for its exception)."""
        if self._serving:
            await asyncio.wait(set(self._serving), timeout=END_WAIT_S)

    async def start(self) -> tuple[str, int]:
        if self.address is None:
            self.address = in_process.listen(self._tracked)
        if self.address is None:  # 127.0.0.1 when mitmproxy cannot connect in-process
            if self._starting is None:
                self._starting = asyncio.ensure_future(asyncio.start_server(self._tracked, "127.0.0.1", 0,
                                                                            limit=MAX_HEAD))
            server: asyncio.Server = await asyncio.shield(self._starting)
            self._server = server
            self.address = server.sockets[0].getsockname()[:2]
        return self.address

    def stop(self) -> None:
        in_process.close(self.address)
        if self._server is not None:
            self._server.close()
        self._server, self.address, self._starting = None, None, None
        self._pending.clear()

    def expect(self, ex: Exchange) -> str:
        """Register an exchange's turn; the token (on `ex.turn`) is the only way to have it served (once)."""
        token = ex.turn.relay_token = self.expect_handler(functools.partial(self._turn, ex))
        return token

    def expect_handler(self, handler: Handler) -> str:
        """Register what serves one connection's request (a WebSocket upgrade: socket.py); once, by its token."""
        token = secrets.token_urlsafe(24)
        self._pending[token] = handler
        return token

    def forget(self, token: str | None) -> None:
        if token:
            self._pending.pop(token, None)

    def forget_turn(self, ex: Exchange) -> None:
        """An exchange's turn no longer served by its token (its answer began, or its flow broke)."""
        token, ex.turn.relay_token = ex.turn.relay_token, None
        self.forget(token)

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
        handler = self._pending.pop(headers.get(TOKEN_HEADER, ""), None)
        if handler is None:
            err = GatewayError(403, "This relay serves only requests the gateway prepared.", code="relay_refused")
            await _write_whole(writer, error_response(err), close=True)
            return False
        return await handler(head, headers, reader, writer)

    async def _turn(self, ex: Exchange, head: bytes, headers: dict[str, str], reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> bool:
        length = int(headers.get("content-length") or 0)
        if length:  # the client's body, kept on the flow for display; not needed here: dropped, not copied
            if isinstance(reader, PipeReader):
                reader.discard(length)
            else:
                await reader.readexactly(length)
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
        await self.runner.run(ex, RelayStream(writer, self.capture, self.runner.refusal))
        await writer.drain()
        return True


class RelayStream:
    """The HTTP stream's transport (turn.Transport): what the turn makes, written to mitmproxy as a server's
    answer — a stream chunked as its events come, or a whole answer (a refusal in the client's format)."""

    keeps = False
    ends_record = False  # mitmproxy's response/error hooks settle the flow
    client: connection.Client | None = None  # a stream's client gone: mitmproxy closes the relay's connection

    def __init__(self, writer: asyncio.StreamWriter, capture: int,
                 refusal: Callable[[Exchange, GatewayError], http.Response]) -> None:
        self.writer = writer
        self.capture = capture
        self.refusal = refusal  # the error as the client's dialect says it (runner.Turns.refusal)
        self.streaming = False

    def translator(self, ex: Exchange) -> None:
        return None  # the endpoint's own SSE

    async def begin(self, ex: Exchange) -> None:
        self.writer.write(STREAM_HEAD)
        self.streaming = True

    async def send(self, outs: list[bytes]) -> None:
        data = b"".join(outs)
        if data:
            self.writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await self.writer.drain()

    async def whole(self, ex: Exchange, answer: http.Response) -> bool:
        await _write_whole(self.writer, answer)
        return True

    async def refuse(self, ex: Exchange, err: GatewayError) -> bool:
        if self.streaming:  # not reached: a stream's failures are its own events (the pump's)
            return False
        await _write_whole(self.writer, self.refusal(ex, err))
        return False

    def cancelled(self, ex: Exchange) -> None:
        return None  # mitmproxy's `error` hook records the client gone

    def ended(self, ex: Exchange, final: dict | None) -> None:
        if self.streaming and not self.writer.is_closing():
            self.writer.write(b"0\r\n\r\n")


async def _write_whole(writer: asyncio.StreamWriter, answer: http.Response, *, close: bool = False) -> None:
    head = [f"HTTP/1.1 {answer.status_code} {_REASONS.get(answer.status_code, 'OK')}\r\n".encode("latin-1")]
    for name, value in answer.headers.fields:
        if name.lower() not in (b"content-length", b"transfer-encoding", b"connection"):
            head.append(b"%s: %s\r\n" % (name, value))
    body = answer.raw_content or b""
    head.append(b"content-length: %d\r\n%s\r\n" % (len(body), b"connection: close\r\n" if close else b""))
    writer.write(b"".join(head) + body)
    await writer.drain()
