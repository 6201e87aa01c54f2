"""A server of the gateway's own on 127.0.0.1 and a random port, started at first use (once, however many
callers ask at the same time) and stopped with the addon. The stream relay and the Responses WebSocket
server are two."""

from __future__ import annotations

import asyncio
from typing import Any

MAX_HEAD = 64 * 1024


class LoopbackServer:
    def __init__(self) -> None:
        self.address: tuple[str, int] | None = None
        self._server: asyncio.Server | None = None
        self._starting: asyncio.Future | None = None
        self._pending: dict[str, Any] = {}  # single-use token -> what the token is for

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def start(self) -> tuple[str, int]:
        if self.address is None:
            if self._starting is None:
                self._starting = asyncio.ensure_future(asyncio.start_server(self._connection, "127.0.0.1", 0,
                                                                            limit=MAX_HEAD))
            server: asyncio.Server = await asyncio.shield(self._starting)
            self._server = server
            self.address = server.sockets[0].getsockname()[:2]
        return self.address

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._server, self.address, self._starting = None, None, None
        self._pending.clear()
