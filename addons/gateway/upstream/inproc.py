"""Servers inside the process, reached with `asyncio.open_connection` like any server.

mitmproxy streams only what a server connection delivers, and it opens server connections with
`asyncio.open_connection(host, port)`. A name under `.invalid` never resolves (RFC 2606), so an address
`(HOST, n)` can only mean one of these servers: `open_connection` to it returns one end of an in-process
connection (pipe.py) and the server gets the other end, in a task of its own — no socket, no accept, no
selector wake-up per write. Every other address goes to asyncio's own `open_connection`, untouched.

The wrapper is installed while at least one server listens and removed with the last one.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from .pipe import pipe

HOST = "qwen-relay.invalid"

Serve = Callable[[Any, Any], Awaitable[None]]  # (PipeReader, PipeWriter): asyncio-stream-like

_servers: dict[tuple[str, int], Serve] = {}
_ports = itertools.count(1)
_tasks: set[asyncio.Task] = set()
_original = asyncio.open_connection


async def _open_connection(host=None, port=None, *args, **kwargs):
    serve = _servers.get((host, port)) if isinstance(host, str) else None
    if serve is None:
        return await _original(host, port, *args, **kwargs)
    # A socket's connect always suspends; mitmproxy relies on it: it runs its connection handler as an eager
    # task and records the task only once the task first suspends (a handler that had connected by then
    # would have its streams overwritten)
    await asyncio.sleep(0)
    (reader, writer), (their_reader, their_writer) = pipe((HOST, port))
    task = asyncio.get_running_loop().create_task(serve(their_reader, their_writer), name="qwen: in-process connection")
    _tasks.add(task)  # a task nobody references may be collected mid-run
    task.add_done_callback(_tasks.discard)
    return reader, writer


def listen(serve: Serve) -> tuple[str, int]:
    """An address whose connections `serve` handles."""
    address = (HOST, next(_ports))
    _servers[address] = serve
    asyncio.open_connection = _open_connection
    return address


def close(address: tuple[str, int] | None) -> None:
    if address is not None:
        _servers.pop(address, None)
    if not _servers:
        asyncio.open_connection = _original
