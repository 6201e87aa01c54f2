"""Servers inside the process, reached by mitmproxy's server connect like any server.

mitmproxy streams only what a server connection delivers. A name under `.invalid` never resolves (RFC 2606),
so an address `(HOST, n)` can only mean one of these servers: mitmproxy's connect to it (seams/server_connect.py)
returns one end of an in-process connection (pipe.py) and the server gets the other end, in a task of its
own — no socket, no accept, no selector wake-up per write. Every other address goes to asyncio's own
`open_connection`, untouched; nothing but mitmproxy's server connect calls this one.

The seam is installed while at least one server listens and removed with the last one.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from ..seams import server_connect
from .pipe import pipe

HOST = "qwen-relay.invalid"

Serve = Callable[[Any, Any], Awaitable[None]]  # (PipeReader, PipeWriter): asyncio-stream-like

_servers: dict[tuple[str, int], Serve] = {}
_ports = itertools.count(1)
_tasks: set[asyncio.Task] = set()


async def open_connection(host=None, port=None, *args, **kwargs):
    """What mitmproxy's server connect calls instead of asyncio.open_connection (same arguments)."""
    serve = _servers.get((host, port)) if isinstance(host, str) else None
    if serve is None:
        return await asyncio.open_connection(host, port, *args, **kwargs)
    # A socket's connect always suspends; mitmproxy relies on it: it runs its connection handler as an eager
    # task and records the task only once the task first suspends (a handler that had connected by then
    # would have its streams overwritten)
    await asyncio.sleep(0)
    (reader, writer), (their_reader, their_writer) = pipe((HOST, port))
    task = asyncio.get_running_loop().create_task(serve(their_reader, their_writer), name="qwen: in-process connection")
    _tasks.add(task)  # a task nobody references may be collected mid-run
    task.add_done_callback(_tasks.discard)
    return reader, writer


def listen(serve: Serve) -> tuple[str, int] | None:
    """An address whose connections `serve` handles; None when mitmproxy's server connect cannot be given
    in-process connections (a mitmproxy the seam was not written against)."""
    if not _servers and not server_connect.install(open_connection):
        return None
    address = (HOST, next(_ports))
    _servers[address] = serve
    return address


def close(address: tuple[str, int] | None) -> None:
    if address is not None:
        _servers.pop(address, None)
    if not _servers:
        server_connect.uninstall()
