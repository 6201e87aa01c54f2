"""The C heap's free pages given back to the system after a large request (issue 79 item 6).

Why: a request of 200,000 short messages is some million Python objects (parsed, checked, translated, printed),
freed once it is answered. Python gives its own arenas back; what went through glibc's malloc (larger objects, the
worker threads' arenas) stays resident as free chunks: a 7.9 MB request left the gateway 35-40 MB larger after
each one, until `malloc_trim` returned them (measured: 40 MB kept → 9 MB; docs/performance.md#a-requests-memory).
A trim walks the heap's free chunks (milliseconds), so only a request of TRIM_BODY bytes or more asks for one, made
by a worker thread TRIM_AFTER_S after the request ended and its own work on worker threads is done (the cache
doctor's print, the prompt's count: on a busy machine they ran past TRIM_AFTER_S, and what they freed after the
trim stayed resident), then TRIM_AFTER_S more for the recorders told after them; one at a time however many large
requests ended meanwhile. Without glibc (musl) there is nothing to call.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
from collections.abc import Iterable

TRIM_BODY = 1 << 20
TRIM_AFTER_S = 2.0
WORK_WAIT_S = 120.0  # a request's work on worker threads waited for at most this long


@functools.cache
def _malloc_trim():
    # the C library this process already runs, by its own symbols: `ctypes.util.find_library` would run
    # `ldconfig -p`, a fork of the whole gateway, on every call
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


class Trimmer:
    """Asks for one trim after each large request (`ended`), the asks of requests ending together made one."""

    def __init__(self, trim=None) -> None:
        self._trim = trim if trim is not None else _malloc_trim()
        self._due: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None  # the trim running (held: the loop keeps only a weak reference)
        self._work: set[asyncio.Future] = set()  # the ended requests' work still running on worker threads
        self.trims = 0  # made so far (tests count them)

    def ended(self, body_size: int, work: Iterable[asyncio.Future | None] = ()) -> None:
        """A request ended; `work`: what it still runs on worker threads (its print, its count), waited for."""
        if body_size < TRIM_BODY or self._trim is None:
            return
        self._work.update(w for w in work if w is not None and not w.done())
        if self._due is not None:
            self._due.cancel()  # a later end moves it: the one trim after the last of them
        self._due = asyncio.get_running_loop().call_later(TRIM_AFTER_S, self._start)

    def _start(self) -> None:
        self._due = None
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="qwen: heap trim")

    async def _run(self) -> None:
        work, self._work = self._work, set()
        if work:
            await asyncio.wait(work, timeout=WORK_WAIT_S)
            await asyncio.sleep(TRIM_AFTER_S)  # the recorders told once that work is done
        self.trims += 1
        await asyncio.to_thread(self._trim, 0)

