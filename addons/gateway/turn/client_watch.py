"""Whole answers given up when their client leaves. mitmproxy holds a client's close until the `request` hook
returns, so the hook would wait for an answer nobody reads; the connection's state says at once that the
client closed it (EOF). One timer looks at every waiting client each CLIENT_WATCH seconds, and only while one
waits: a request pays an entry in a dict, not a task and a timer of its own."""

from __future__ import annotations

import asyncio

from mitmproxy import connection

CLIENT_WATCH = 0.1  # seconds between looks at a waiting client's connection


class ClientWatch:
    def __init__(self) -> None:
        self._waiting: dict[asyncio.Task, connection.Client] = {}
        self._left: set[asyncio.Task] = set()  # cancelled here: their client left
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, task: asyncio.Task, client: connection.Client) -> None:
        self._waiting[task] = client
        loop = asyncio.get_running_loop()
        if self._handle is None or self._loop is not loop:
            self._loop, self._handle = loop, loop.call_later(CLIENT_WATCH, self._look)

    def discard(self, task: asyncio.Task) -> bool:
        """Stop watching `task`; whether it was cancelled because its client left."""
        self._waiting.pop(task, None)
        if task in self._left:
            self._left.discard(task)
            return True
        return False

    def _look(self) -> None:
        self._handle = None
        for task, client in list(self._waiting.items()):
            if not client.state & connection.ConnectionState.CAN_READ and task not in self._left:
                self._left.add(task)
                task.cancel()
        if self._waiting and self._loop is not None:
            self._handle = self._loop.call_later(CLIENT_WATCH, self._look)
