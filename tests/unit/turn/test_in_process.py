"""Servers inside the process (turn/in_process.py): reached by mitmproxy's server connect at a `.invalid` address,
every other address left to asyncio; the seam installed while one server listens."""

from __future__ import annotations

import asyncio

import pytest
from helpers.pingpong import closed_port, pong

from qwen_gateway.turn import in_process


async def test_open_connection_reaches_a_listening_server_and_nothing_else_changes():
    """in_process.open_connection is what mitmproxy's server connect calls (seams/server_connect.py; driven through
    mitmproxy's own code in tests/unit/seams/test_server_connect.py): asyncio's own is never replaced."""
    original = asyncio.open_connection
    seen: list[bytes] = []
    address = in_process.listen(pong(seen))
    try:
        assert address is not None and address[0].endswith(".invalid")
        assert asyncio.open_connection is original
        reader, writer = await in_process.open_connection(*address)
        writer.write(b"ping")
        assert await reader.read(10) == b"pong"
        assert await reader.read(10) == b""
        assert seen == [b"ping"]
        # any other address is asyncio's own connect (here: nothing listens on the port)
        with pytest.raises(OSError):
            await in_process.open_connection("127.0.0.1", await closed_port())
    finally:
        in_process.close(address)
    assert asyncio.open_connection is original  # asyncio as it was


async def test_a_connection_completes_only_after_the_caller_could_record_its_task():
    """mitmproxy runs its connection handler as an eager task and records the task when it first suspends;
    a connect that returned without suspending would be overwritten (a socket's connect always suspends)."""
    async def serve(reader, writer):
        writer.close()

    address = in_process.listen(serve)
    assert address is not None
    try:
        loop = asyncio.get_running_loop()
        previous = loop.get_task_factory()
        loop.set_task_factory(asyncio.eager_task_factory)
        try:
            task = loop.create_task(in_process.open_connection(*address))
            assert not task.done()
            await task
        finally:
            loop.set_task_factory(previous)
    finally:
        in_process.close(address)


async def test_each_server_gets_its_own_address_and_a_closed_one_is_not_served(monkeypatch):
    before = dict(in_process._servers)  # other tests' servers may still listen in this process
    seen_a: list[bytes] = []
    seen_b: list[bytes] = []
    a, b = in_process.listen(pong(seen_a)), in_process.listen(pong(seen_b))
    try:
        assert a is not None and b is not None and a != b and a[0] == b[0] == in_process.HOST
        reader, writer = await in_process.open_connection(*b)
        writer.write(b"ping")
        assert await reader.read(10) == b"pong" and seen_b == [b"ping"] and seen_a == []
        in_process.close(a)
        asked: list[tuple] = []

        async def asyncios_own(host, port, *args, **kwargs):  # no DNS query for the .invalid name
            asked.append((host, port))
            raise ConnectionRefusedError

        monkeypatch.setattr(in_process.asyncio, "open_connection", asyncios_own)
        with pytest.raises(ConnectionRefusedError):
            await in_process.open_connection(*a)
        assert asked == [a]  # handed on as any address nobody serves
    finally:
        in_process.close(a)
        in_process.close(b)
    assert in_process._servers == before


def test_closing_nothing_is_harmless():
    before = dict(in_process._servers)
    in_process.close(None)
    in_process.close((in_process.HOST, 10**9))
    assert in_process._servers == before
