"""A gateway frozen (SIGSTOP, a VM paused; or starved that long) reads its keys again before it decides the next
request with a named key: the requests that queued while it was frozen are decided by the keys as they are now,
not as they were (before: a frozen gateway, resumed, served a key revoked meanwhile). The sign is its event loop
not having run for GAP_S; a starved machine costs one more read of the keys per gap."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("qwen")
GAP_S = 2.0
WATCH_S = 0.25  # how often the loop's running is noted
READ_WAIT_S = 10.0  # how long a request waits for that read at most (then the keys as last read decide)


class LoopWatch:
    def __init__(self, read: Callable[[], Awaitable[None]]) -> None:
        self._read = read  # the keys read again (every key)
        self._watched = time.monotonic()  # when the loop last ran the watch
        self._gap = False  # a gap seen: the keys are read again before the next named key is decided
        self._reread: asyncio.Future | None = None
        self.running = False

    async def watch(self) -> None:
        """For ever (a task of its own, while the gateway runs)."""
        self._watched, self.running = time.monotonic(), True
        try:
            while True:
                await asyncio.sleep(WATCH_S)
                now = time.monotonic()
                if now - self._watched > GAP_S:
                    self._gap = True
                self._watched = now
        finally:
            self.running = False

    def stale(self) -> bool:
        """Whether the loop did not run for GAP_S since the keys were last known current."""
        return self.running and (self._gap or time.monotonic() - self._watched > GAP_S)

    async def fresh(self) -> None:
        """After a gap: the keys read again, one read for every request that waits (READ_WAIT_S at most; a read
        that fails leaves the keys as last read, as in an outage)."""
        if not self.stale():
            return
        self._gap = True
        if self._reread is None or self._reread.done():
            self._reread = asyncio.ensure_future(self._read_again())
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(self._reread), READ_WAIT_S)

    async def _read_again(self) -> None:
        try:
            await self._read()
        except Exception as e:
            log.debug("qwen: named keys read again after a gap: %s", type(e).__name__)
        finally:
            self._gap, self._watched = False, time.monotonic()
