"""The in-process connection (turn/pipe.py): what mitmproxy and the relay need of a socket — bytes both ways, EOF,
half-close, close, backpressure. The servers reached through it: tests/unit/turn/test_in_process.py."""

from __future__ import annotations

import asyncio

import pytest

from qwen_gateway.turn import pipe


async def test_bytes_travel_both_ways_and_close_is_eof_on_both_sides():
    (a_r, a_w), (b_r, b_w) = pipe.pipe(("x.invalid", 1))
    a_w.write(b"GET / HTTP/1.1\r\n\r\n")
    assert await b_r.readuntil(b"\r\n\r\n") == b"GET / HTTP/1.1\r\n\r\n"
    b_w.write(b"hello")
    await b_w.drain()
    assert await a_r.read(100) == b"hello"
    a_w.close()  # mitmproxy closes: the relay's pending read ends, its drains fail
    assert await b_r.read(1) == b""
    assert await a_r.read(1) == b""
    b_w.write(b"late")  # dropped, as a socket's transport drops what is written after the peer is gone
    with pytest.raises(ConnectionResetError):
        await b_w.drain()
    assert a_w.is_closing() and a_w.get_extra_info("peername") == ("x.invalid", 1)


async def test_a_write_to_a_closed_connection_never_raises_where_mitmproxy_writes():
    """mitmproxy's server loop writes to a server connection without expecting `write` itself to raise (a socket's
    transport never does): a raise there is "mitmproxy has crashed!". The relay closing first, and mitmproxy
    writing a WebSocket close reply after, is such a write."""
    (a_r, a_w), (b_r, b_w) = pipe.pipe(("x.invalid", 1))
    b_w.close()  # the serving side is done
    a_w.write(b"\x88\x02\x03\xe8")  # mitmproxy's late write: dropped
    a_w.close()
    a_w.write(b"after its own close")  # dropped too
    assert await a_r.read(10) == b""


async def test_half_close_leaves_the_other_direction_open():
    (a_r, a_w), (b_r, b_w) = pipe.pipe(("x.invalid", 1))
    a_w.write_eof()
    assert await b_r.read(10) == b""
    b_w.write(b"still")
    assert await a_r.read(10) == b"still"


async def test_drain_waits_while_the_peer_holds_too_much_unread():
    (a_r, a_w), (b_r, b_w) = pipe.pipe(("x.invalid", 1))
    b_w.write(b"x" * (pipe.HIGH_WATER + 1))
    drained = asyncio.ensure_future(b_w.drain())
    await asyncio.sleep(0.01)
    assert not drained.done()  # a slow reader slows the writer, as a full socket buffer does
    await a_r.read(pipe.HIGH_WATER)
    await asyncio.wait_for(drained, 1)


async def test_a_writer_waiting_for_room_fails_when_the_reader_closes():
    (a_r, a_w), (b_r, b_w) = pipe.pipe(("x.invalid", 1))
    b_w.write(b"x" * (pipe.HIGH_WATER + 1))
    drained = asyncio.ensure_future(b_w.drain())
    await asyncio.sleep(0)
    a_w.close()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(drained, 1)


async def test_the_reader_calls_back_once_when_its_peer_closes():
    """The relay's watch for a client gone mid-answer: a callback, not a read pending in a task of its own."""
    (_, client_w), (server_r, _) = pipe.pipe(("qwen-relay.invalid", 1))
    told: list[int] = []
    server_r.on_eof = lambda: told.append(1)
    client_w.write(b"more bytes: stay buffered, no callback")
    assert told == []
    client_w.close()
    client_w.close()
    assert told == [1] and server_r.on_eof is None
    assert await server_r.read() == b"more bytes: stay buffered, no callback"


async def test_discard_drops_bytes_unread_whether_they_came_before_or_after():
    """The relay drops the client's body mitmproxy sends it (the flow keeps it): never copied out of the
    buffer, and what arrives later is dropped as it comes, never buffered; the next bytes read as usual."""
    (_, writer), (reader, _) = pipe.pipe(("h", 1))
    writer.write(b"HEAD\r\n\r\n" + b"x" * 10)
    assert await reader.readuntil(b"\r\n\r\n") == b"HEAD\r\n\r\n"
    reader.discard(25)
    assert reader.unread == 0 and len(reader._buffer) == 0  # the 10 there dropped, 15 more to come
    writer.write(b"y" * 10)
    assert len(reader._buffer) == 0 and reader.unread == 0
    writer.write(b"y" * 5 + b"NEXT\r\n\r\n")
    assert await reader.readuntil(b"\r\n\r\n") == b"NEXT\r\n\r\n" and reader.unread == 0
