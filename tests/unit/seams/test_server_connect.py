"""mitmproxy's server connect reaching the gateway's in-process servers (seams/server_connect.py,
upstream/in_process.py): driven through mitmproxy's own `ConnectionHandler.open_connection`, the only code that
sees the gateway's `open_connection` (asyncio's stays asyncio's); and on another mitmproxy's server connect,
the seam stays out and the relay listens on 127.0.0.1, still serving."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from helpers import another_mitmproxy
from helpers.pingpong import closed_port, pong
from mitmproxy import connection, options
from mitmproxy.proxy import commands, context, events, server
from mitmproxy.test import tflow

from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.seams import fingerprint, server_connect
from qwen_gateway.turn import in_process
from qwen_gateway.turn.relay import TOKEN_HEADER, LoopbackRelay


class Handler(server.ConnectionHandler):
    """mitmproxy's connection handler with its layers left out: the events it would feed them are recorded."""

    def __init__(self) -> None:
        super().__init__(context.Context(tflow.tclient_conn(), options.Options()))
        self.events: list[events.Event] = []

    async def handle_hook(self, hook) -> None:
        pass

    async def server_event(self, event: events.Event) -> None:
        self.events.append(event)


async def _until(condition, what: str) -> None:
    for _ in range(200):  # at most 2 s
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def _connect(handler: Handler, address) -> tuple[connection.Server, asyncio.Task]:
    conn = connection.Server(address=address)
    task = asyncio.get_running_loop().create_task(handler.open_connection(commands.OpenConnection(conn)))
    await _until(lambda: handler.events, "the connect completed")
    return conn, task


async def _end(task: asyncio.Task) -> None:
    task.cancel()  # mitmproxy's side closes (its handler waits for that once the server has closed its own)
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_mitmproxys_server_connect_reaches_an_in_process_server_and_nothing_else_changes():
    mitmproxys, asyncios = server.ConnectionHandler.open_connection, asyncio.open_connection
    seen: list[bytes] = []
    address = in_process.listen(pong(seen))
    try:
        assert address is not None and address[0].endswith(".invalid")
        assert asyncio.open_connection is asyncios  # nothing process-wide: asyncio is asyncio's
        handler = Handler()
        conn, task = await _connect(handler, address)
        [done] = handler.events
        assert isinstance(done, events.OpenConnectionCompleted) and done.reply is None
        assert conn.peername == address
        handler.transports[conn].writer.write(b"ping")
        await _until(lambda: isinstance(handler.events[-1], events.ConnectionClosed), "the server closed")
        assert [e.data for e in handler.events if isinstance(e, events.DataReceived)] == [b"pong"]
        assert seen == [b"ping"]
        await _end(task)
        # any other address is asyncio's own connect (here: nothing listens on the port)
        other = Handler()
        await _connect(other, ("127.0.0.1", await closed_port()))
        [refused] = other.events
        assert isinstance(refused, events.OpenConnectionCompleted) and "Connect call failed" in (refused.reply or "")
    finally:
        in_process.close(address)
    assert server.ConnectionHandler.open_connection is mitmproxys  # the last server gone: mitmproxy's own


class Answer:
    """The engine's answer (interfaces.UpstreamAnswer): two SSE events."""

    status_code = 200
    headers = {"content-type": "text/event-stream"}
    closed = False

    async def aiter_raw(self):
        yield b"data: one\n\n"
        yield b"data: [DONE]\n\n"

    async def aread(self) -> bytes:
        return b""

    async def aclose(self) -> None:
        self.closed = True


async def test_on_another_mitmproxys_server_connect_the_relay_listens_on_loopback_with_one_line(
        tmp_path, monkeypatch, caplog):
    """Written against mitmproxy 12.2.3's ConnectionHandler.open_connection: a release that changes a line of it
    (a log message) keeps its own, and the relay is a socket on 127.0.0.1 again, serving streams as before."""
    monkeypatch.setattr(fingerprint, "_told", set())
    monkeypatch.setattr(fingerprint, "decided", {})  # this test decides anew
    monkeypatch.setattr(in_process, "_servers", {})  # as in a process where nothing listened yet
    monkeypatch.setattr(server_connect, "_mitmproxys", None)
    other = another_mitmproxy.release("mitmproxy.proxy.server", tmp_path, monkeypatch)
    monkeypatch.setattr(server.ConnectionHandler, "open_connection", other.ConnectionHandler.open_connection)
    answer = Answer()

    class Runner:  # the turn, as the relay sees it: Qwen's events passed on to the transport as they come
        async def run(self, ex: Exchange, transport) -> None:
            await transport.begin(ex)
            async for chunk in answer.aiter_raw():
                await transport.send([chunk])
            await answer.aclose()
            transport.ended(ex, None)

        def refusal(self, ex, err):
            raise AssertionError("not refused")

    relay = LoopbackRelay(Runner())  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="qwen"):
        address = await relay.start()
        assert await relay.start() == address
    try:
        assert address[0] == "127.0.0.1"
        assert server.ConnectionHandler.open_connection is other.ConnectionHandler.open_connection
        token = relay.expect(Exchange(ClientRequest("POST", "/v1/chat/completions", "x/v1/chat/completions")))
        reader, writer = await asyncio.open_connection(*address)
        writer.write(f"POST /v1/chat/completions HTTP/1.1\r\n{TOKEN_HEADER}: {token}\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        body = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 5)
        writer.close()
    finally:
        relay.stop()
    assert head.startswith(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream")
    assert body == b"b\r\ndata: one\n\n\r\ne\r\ndata: [DONE]\n\n\r\n0\r\n\r\n" and answer.closed
    [line] = caplog.messages
    assert "(mitmproxy 12.2.3; changed: ConnectionHandler.open_connection)" in line
    assert "the relay listens on 127.0.0.1 instead" in line
