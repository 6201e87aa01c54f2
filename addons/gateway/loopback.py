"""A server of the gateway's own on 127.0.0.1 and a random port, started at first use (once, however many
callers ask at the same time) and stopped with the addon. The stream relay and the Responses WebSocket
server are two."""

from __future__ import annotations

import asyncio
from typing import Any

MAX_HEAD = 64 * 1024
END_WAIT_S = 5.0  # at shutdown: how long connections in progress get to end


class LoopbackServer:
    def __init__(self) -> None:
        self.address: tuple[str, int] | None = None
        self._server: asyncio.Server | None = None
        self._starting: asyncio.Future | None = None
        self._pending: dict[str, Any] = {}  # single-use token -> what the token is for
        self._serving: set[asyncio.Task] = set()  # each connection's task, until it ends

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def _tracked(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()  # start_server runs each connection in a task of its own
        serving = {task} if task is not None else set()
        self._serving |= serving
        try:
            await self._connection(reader, writer)
        finally:
            self._serving -= serving

    async def ended(self) -> None:
        """At shutdown, once mitmproxy has closed its side: until every connection in progress has ended.
        A connection task asyncio cancels at exit prints a CancelledError traceback (Python 3.12.1's
        StreamReaderProtocol asks the cancelled task for its exception)."""
        if self._serving:
            await asyncio.wait(set(self._serving), timeout=END_WAIT_S)

    async def start(self) -> tuple[str, int]:
        if self.address is None:
            if self._starting is None:
                self._starting = asyncio.ensure_future(asyncio.start_server(self._tracked, "127.0.0.1", 0,
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
