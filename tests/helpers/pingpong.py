"""What the in-process connection tests serve and connect to (tests/unit/upstream/test_pipe.py,
tests/unit/seams/test_server_connect.py): a server that reads "ping" and answers "pong", and a port where
nothing listens."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


def pong(seen: list[bytes]) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """A server reading four bytes (kept in `seen`), answering b"pong" and closing."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readexactly(4))
        writer.write(b"pong")
        writer.close()
    return serve


async def closed_port() -> int:
    """A loopback port nothing listens on (a server opened there, then closed)."""
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port
