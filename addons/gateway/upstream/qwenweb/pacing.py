"""Pacing per web account (qwen-web-protocol.md §1.13: QS spaces its requests 4 s apart; punished calls raise
the session's risk score): at least `interval` seconds between two generations started with one account.
Each request books the next free slot, so concurrent requests queue in order instead of bursting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class Pacer:
    def __init__(self, interval: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.interval = interval
        self.clock = clock
        self.sleep = sleep
        self.next: dict[str, float] = {}  # account -> when its next request may start

    def book(self, account: str) -> float:
        """Seconds to wait before sending with `account` (the slot is taken at once)."""
        if self.interval <= 0:
            return 0.0
        now = self.clock()
        slot = max(now, self.next.get(account, now))
        self.next[account] = slot + self.interval
        return slot - now

    async def wait(self, account: str) -> None:
        delay = self.book(account)
        if delay > 0:
            await self.sleep(delay)
