"""The engine's chunked-body decoder (upstream/chunked.py) and the client reading a stream through it."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qwen_gateway.errors import ConnectionFailed
from qwen_gateway.upstream.chunked import ChunkedDecoder
from qwen_gateway.upstream.client import UpstreamClient

EVENTS = [b"data: {\"n\": %d}\n\n" % i for i in range(5)]
WIRE = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(e), e) for e in EVENTS) + b"0\r\nx-trailer: 1\r\n\r\n"


@given(st.lists(st.integers(min_value=1, max_value=len(WIRE) - 1), unique=True))
def test_any_split_of_the_wire_gives_the_body(cuts):
    d = ChunkedDecoder()
    pieces, last = [], 0
    for cut in sorted(cuts) + [len(WIRE)]:
        pieces.append(d.feed(WIRE[last:cut]))
        last = cut
    assert b"".join(pieces) == b"".join(EVENTS) and d.done and d.leftover == b""


def test_chunks_that_arrive_together_come_out_as_one_piece():
    d = ChunkedDecoder()
    assert d.feed(WIRE) == b"".join(EVENTS)


@pytest.mark.parametrize("wire", [b"zz\r\nabc\r\n", b"3\r\nabcX\r\n", b"-3\r\nabc\r\n", b"1" * 5000])
def test_broken_framing_is_an_error(wire):
    with pytest.raises(ValueError):
        ChunkedDecoder().feed(wire)


def test_bytes_after_the_body_are_kept_apart():
    d = ChunkedDecoder()
    assert d.feed(b"1\r\na\r\n0\r\n\r\nHTTP/1.1") == b"a"
    assert d.done and d.leftover == b"HTTP/1.1"


async def _serve_once(writes: list[bytes]):
    """A server answering each request with a chunked head and then `writes`, one write each."""
    async def handle(reader, writer):
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            for w in writes:
                writer.write(w)
                await writer.drain()
                await asyncio.sleep(0.01)
        writer.close()
    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_a_stream_is_read_as_it_arrives_and_its_connection_reused():
    server = await _serve_once([WIRE[:7], WIRE[7:40], WIRE[40:]])
    url = "http://127.0.0.1:%d/x" % server.sockets[0].getsockname()[1]
    client = UpstreamClient(keepalive=60)
    try:
        for _ in range(2):
            resp = await client.send(url, [], b"{}", head_timeout=5, read_timeout=5)
            pieces = [p async for p in resp.aiter_raw()]
            await resp.aclose()
            assert b"".join(pieces) == b"".join(EVENTS) and len(pieces) >= 2  # not held until the end
        assert client.connections_opened == 1
    finally:
        await client.aclose()
        server.close()


async def test_broken_framing_from_upstream_is_a_connection_failure():
    server = await _serve_once([b"zz\r\n"])
    url = "http://127.0.0.1:%d/x" % server.sockets[0].getsockname()[1]
    client = UpstreamClient(keepalive=60)
    try:
        resp = await client.send(url, [], b"{}", head_timeout=5, read_timeout=5)
        with pytest.raises(ConnectionFailed):
            [p async for p in resp.aiter_raw()]
        await resp.aclose()
    finally:
        await client.aclose()
        server.close()
