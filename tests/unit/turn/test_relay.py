"""The relay (turn/relay.py), the gateway's one server, in process: a request is served only with a token the
gateway handed out, once; a turn's transport writes a stream chunked and ends it, a refusal whole; a handler
registered for a WebSocket upgrade gets the connection; a client gone (mitmproxy closing its end) cancels the
turn."""

from __future__ import annotations

import asyncio

from mitmproxy import http

from qwen_gateway.errors import GatewayError
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.turn import in_process
from qwen_gateway.turn.relay import TOKEN_HEADER, LoopbackRelay


class Runner:
    """The turn as the relay sees it: `script` plays what the turn does with the transport."""

    def __init__(self, script) -> None:
        self.script = script
        self.cancelled = False

    async def run(self, ex, transport) -> None:
        try:
            await self.script(ex, transport)
        except asyncio.CancelledError:
            self.cancelled = True
            raise

    def refusal(self, ex, err: GatewayError) -> http.Response:
        return http.Response.make(err.status, err.to_bytes(), {"content-type": "application/json"})


async def connect(relay: LoopbackRelay, token: str):
    host, port = await relay.start()
    reader, writer = await (in_process.open_connection(host, port) if host == in_process.HOST
                            else asyncio.open_connection(host, port))
    writer.write(f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n{TOKEN_HEADER}: {token}\r\n"
                 "content-length: 2\r\n\r\n{}".encode())
    return reader, writer


def exchange() -> Exchange:
    return Exchange(ClientRequest("POST", "/v1/chat/completions", "x"))


async def test_a_stream_is_written_chunked_and_ended():
    async def stream(ex, t):
        await t.begin(ex)
        await t.send([b"data: one\n\n"])
        await t.send([b"data: [DONE]\n\n"])
        t.ended(ex, None)
    relay = LoopbackRelay(Runner(stream))  # type: ignore[arg-type]
    try:
        reader, writer = await connect(relay, relay.expect(exchange()))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        body = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 5)
        writer.close()
    finally:
        relay.stop()
    assert head.startswith(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream") and b"chunked" in head
    assert body == b"b\r\ndata: one\n\n\r\ne\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"


async def test_a_refusal_is_written_whole_in_the_clients_format():
    async def refused(ex, t):
        await t.refuse(ex, GatewayError(429, "spent", code="insufficient_quota"))
        t.ended(ex, None)
    relay = LoopbackRelay(Runner(refused))  # type: ignore[arg-type]
    try:
        reader, writer = await connect(relay, relay.expect(exchange()))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = int(next(ln for ln in head.split(b"\r\n") if ln.startswith(b"content-length")).split(b":")[1])
        body = await reader.readexactly(length)
        writer.close()
    finally:
        relay.stop()
    assert head.startswith(b"HTTP/1.1 429") and b'"insufficient_quota"' in body


async def test_without_its_token_nothing_is_served_and_a_token_serves_once():
    ran = []

    async def once(ex, t):
        ran.append(ex)
        await t.whole(ex, http.Response.make(200, b"ok", {"content-type": "text/plain"}))
        t.ended(ex, None)
    relay = LoopbackRelay(Runner(once))  # type: ignore[arg-type]
    try:
        token = relay.expect(exchange())
        for t, status in (("made-up", b"403"), (token, b"200"), (token, b"403")):
            reader, writer = await connect(relay, t)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.split(b" ")[1] == status
            writer.close()
    finally:
        relay.stop()
    assert len(ran) == 1


async def test_a_handler_gets_the_upgrades_connection():
    seen = []

    async def handler(head, headers, reader, writer) -> bool:
        seen.append(headers.get(TOKEN_HEADER))
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        await writer.drain()
        return False
    relay = LoopbackRelay(Runner(None))  # type: ignore[arg-type]
    try:
        token = relay.expect_handler(handler)
        reader, writer = await connect(relay, token)
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 101")
        writer.close()
    finally:
        relay.stop()
    assert seen == [token]


async def test_a_client_gone_cancels_the_turn():
    started = asyncio.Event()

    async def hangs(ex, t):
        await t.begin(ex)
        started.set()
        await asyncio.Event().wait()
    runner = Runner(hangs)
    relay = LoopbackRelay(runner)  # type: ignore[arg-type]
    try:
        reader, writer = await connect(relay, relay.expect(exchange()))
        await asyncio.wait_for(started.wait(), 5)
        writer.close()  # mitmproxy closes its end: the client went away
        for _ in range(100):
            if runner.cancelled:
                break
            await asyncio.sleep(0.01)
    finally:
        relay.stop()
    assert runner.cancelled


def test_a_stream_is_kept_on_its_flow_only_when_something_can_read_it(tmp_path):
    """Plain mitmdump (no flow view, no flow file, bodies not printed, no debug log): nothing reads a stream's
    bytes on its flow, so none are copied; mitmweb or the console (their `view`), a flow file (-w:
    save_stream_file), mitmdump printing bodies (flow_detail >= 3) or the debug log each read them."""
    from mitmproxy.addons import dumper, save, view
    from mitmproxy.test import taddons

    from qwen_gateway.turn.relay import stream_capture
    from qwen_gateway.turn.relay import STREAM_CAPTURE

    with taddons.context(dumper.Dumper(), save.Save()) as tctx:
        assert stream_capture(tctx.master, tctx.options, debug_log=False) == 0
        assert stream_capture(tctx.master, tctx.options, debug_log=True) == STREAM_CAPTURE
        tctx.options.update(flow_detail=2)
        assert stream_capture(tctx.master, tctx.options, debug_log=False) == 0
        tctx.options.update(flow_detail=3)
        assert stream_capture(tctx.master, tctx.options, debug_log=False) == STREAM_CAPTURE
        tctx.options.update(flow_detail=0, save_stream_file=str(tmp_path / "flows.mitm"))
        assert stream_capture(tctx.master, tctx.options, debug_log=False) == STREAM_CAPTURE
    with taddons.context(view.View()) as tctx:  # mitmweb, mitmproxy's console
        assert stream_capture(tctx.master, tctx.options, debug_log=False) == STREAM_CAPTURE



def test_the_turns_token_is_on_its_exchange_until_forgotten():
    """The relay (turn/) writes the token on the turn's state: the addon asks it to, and to forget it."""
    relay = LoopbackRelay(Runner(None))  # type: ignore[arg-type]
    ex = exchange()
    token = relay.expect(ex)
    assert ex.turn.relay_token == token and token in relay._pending
    relay.forget_turn(ex)
    assert ex.turn.relay_token is None and token not in relay._pending
    relay.forget_turn(ex)  # once more (the error hook after responseheaders): nothing to forget
