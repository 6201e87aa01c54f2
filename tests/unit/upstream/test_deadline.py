"""The upstream client's time limits (upstream/deadline.py) against a real server on loopback: a head that does
not come and a body that stops are timeouts, as with `asyncio.wait_for` per read; a body that keeps coming
is not, however long it lasts; and the whole exchange costs one timer, not one per read."""

from __future__ import annotations

import asyncio
import sys

import pytest

from qwen_gateway.errors import UpstreamTimeout
from qwen_gateway.upstream.client import UpstreamClient


async def _server(handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/chat"


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads the request, answers nothing."""
    await reader.readuntil(b"\r\n\r\n")
    await asyncio.sleep(3600)


def _chunked_server(pieces: int, gap: float, stall_after: int | None = None):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for i in range(pieces):
            if stall_after is not None and i == stall_after:
                await asyncio.sleep(3600)
            data = b"data: %d\n\n" % i
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()
            await asyncio.sleep(gap)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    return handle


class TimerCount:
    """loop.call_at calls the client makes for an exchange (its connect's limit, and the test server's own
    sleeps, are not counted)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, monkeypatch) -> None:
        self.n = 0
        real = loop.call_at

        def call_at(*a, **kw):
            f = sys._getframe(1)
            while f is not None:
                if f.f_code.co_name in ("_checkout", "_connect"):
                    break
                if f.f_code.co_filename.endswith(("upstream/client.py", "upstream/deadline.py")):
                    self.n += 1
                    break
                f = f.f_back
            return real(*a, **kw)
        monkeypatch.setattr(loop, "call_at", call_at)


async def test_a_head_that_does_not_come_is_a_timeout():
    server, url = await _server(_silent)
    client = UpstreamClient(keepalive=5)
    try:
        with pytest.raises(UpstreamTimeout, match="no answer within 0.2 s"):
            await client.send(url, [], b"{}", head_timeout=0.2, read_timeout=5)
    finally:
        await client.aclose()
        server.close()


async def test_a_body_that_stops_is_a_timeout_and_one_that_keeps_coming_is_not(monkeypatch):
    server, url = await _server(_chunked_server(pieces=12, gap=0.05))
    client = UpstreamClient(keepalive=5)
    try:
        loop = asyncio.get_running_loop()
        timers = TimerCount(loop, monkeypatch)
        # 12 reads over ~0.6 s, each well within 0.25 s, the whole longer than the limit: no timeout
        began = loop.time()
        resp = await client.send(url, [], b"{}", head_timeout=5, read_timeout=0.25)
        got = [chunk async for chunk in resp.aiter_raw()]
        await resp.aclose()
        took = loop.time() - began  # ~0.6 s; more on a busy machine, whose timers are then more too
        assert b"".join(got).count(b"data:") == 12 and len(got) >= 6
        # one timer per 0.25 s of the exchange (it wakes, sees a later deadline, sleeps again), not one per read
        assert timers.n <= 1 + took / 0.25 + 1 and timers.n < len(got), (timers.n, took, len(got))
    finally:
        await client.aclose()
        server.close()
    server, url = await _server(_chunked_server(pieces=5, gap=0.01, stall_after=2))
    client = UpstreamClient(keepalive=5)
    try:
        resp = await client.send(url, [], b"{}", head_timeout=5, read_timeout=0.2)
        got = []
        with pytest.raises(UpstreamTimeout, match="no data for 0.2 s"):
            async for chunk in resp.aiter_raw():
                got.append(chunk)
        await resp.aclose()
        assert b"".join(got).count(b"data:") == 2
    finally:
        await client.aclose()
        server.close()


async def test_a_whole_answer_costs_one_timer(monkeypatch):
    async def answer(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.02)  # the body in a read of its own
        writer.write(b"{}")
        await writer.drain()
    server, url = await _server(answer)
    client = UpstreamClient(keepalive=5)
    try:
        timers = TimerCount(asyncio.get_running_loop(), monkeypatch)
        resp = await client.send(url, [], b"{}", head_timeout=600, read_timeout=600)
        assert await resp.aread() == b"{}"
        await resp.aclose()
        assert timers.n == 1
    finally:
        await client.aclose()
        server.close()


async def test_a_cancellation_that_is_not_the_deadlines_goes_on():
    server, url = await _server(_silent)
    client = UpstreamClient(keepalive=5)
    try:
        task = asyncio.ensure_future(client.send(url, [], b"{}", head_timeout=600, read_timeout=600))
        await asyncio.sleep(0.05)
        task.cancel()  # the client left
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await client.aclose()
        server.close()
