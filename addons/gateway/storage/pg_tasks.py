"""What a shared database leaves running on the event loop, and its end at shutdown: the writes started in the
background (`drain` waits for them) and the pools (`close_pools` closes them)."""

from __future__ import annotations

import asyncio
import weakref
from typing import Protocol


class Pooled(Protocol):
    """A pg.Database whose event-loop pool is open."""

    async def aclose(self) -> None: ...

DRAIN_S = 10.0  # at shutdown, how long the last background writes may take

_writes: set[asyncio.Task] = set()  # every Database's background tasks: what `drain` waits for at shutdown
# Databases whose event-loop pool is open: closed at shutdown. psycopg_pool's workers swallow a cancellation
# that lands while they run a task (3.3: CancelledError is among the exceptions they survive), so a pool the
# event loop's end finds open can keep that end waiting for ever (a hung stop, seen under load).
_pooled: weakref.WeakSet[Pooled] = weakref.WeakSet()


async def drain() -> None:
    """Shutdown: wait (at most DRAIN_S) for the writes still running in the background (request counts
    flushed at the end, the last stored responses), which would die with the event loop."""
    if _writes:
        await asyncio.wait(set(_writes), timeout=DRAIN_S)


async def close_pools() -> None:
    """Shutdown, after `drain`: every open pool closed (its workers told to stop), at most DRAIN_S in all."""
    dbs = list(_pooled)
    if dbs:
        await asyncio.wait([asyncio.ensure_future(db.aclose()) for db in dbs], timeout=DRAIN_S)


def _ended(task: asyncio.Task) -> None:
    """A background task's end: its failure retrieved here (whoever awaits it still gets it; nobody else
    is told "exception never retrieved" when it is collected)."""
    if not task.cancelled():
        task.exception()
