"""`Database.follow`: a store's local copy kept in step with the shared database (NOTIFY, and a full reload
now and then), through restarts and outages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .health import PROBE_S, StateUnavailable
from .pg_faults import unavailable

log = logging.getLogger("qwen")
CLOSE_S = 2.0  # closing a follower's connection, at most


async def follow(db: Any, component: str, steps: Sequence[str], kind: str, reload: Callable[[str | None], Awaitable[None]],
                 *, every: float, what: str, ready: asyncio.Event | None = None) -> None:
    """Keep a local copy in step with the database `db` (pg.Database), for ever (a task of its own): migrate,
    `reload(None)` (everything), then `reload(key)` for each NOTIFY "<kind>:<key>", and `reload(None)` again
    every `every` seconds (a lost notification). The database away: the whole again once it is back (the Health says it
    once); another failure is logged (`what`) and the whole retried after `every`."""
    while True:
        conn = notes = None
        try:
            await db.amigrate(component, steps)
            conn = await db.listen()
            await reload(None)
            if ready is not None:
                ready.set()
            while True:
                notes = conn.notifies(timeout=every)
                async for note in notes:
                    got, _, key = note.payload.partition(":")
                    if got == kind:
                        await reload(key)
                await reload(None)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if isinstance(e, StateUnavailable) or unavailable(e):
                if not isinstance(e, StateUnavailable):
                    db.lost(e)  # the listener is often the first to see a restart
                await asyncio.sleep(PROBE_S)  # tried again: refused at once (no network) until the probe sees it back
            else:
                log.warning("qwen: %s: %s (retrying in %.0f s)", what, type(e).__name__, every)
                await asyncio.sleep(every)
        finally:
            # the notifications' generator holds the connection's lock until it is closed: closed first, or
            # the connection's close waits for it for ever (a cancelled task that never ends: the event
            # loop's shutdown hung on it under load); and neither may wait long
            with contextlib.suppress(Exception):
                if notes is not None:
                    await asyncio.wait_for(notes.aclose(), CLOSE_S)
                if conn is not None:
                    await asyncio.wait_for(conn.close(), CLOSE_S)
