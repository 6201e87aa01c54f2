"""The time limits of one upstream exchange — its head, then each read of its body — kept by one timer.

`asyncio.wait_for` around every read made a timer per read (a Timeout object, a heap push, a cancel): a
streamed answer paid one per network read, a whole answer two. Here each wait only notes its deadline (a
clock read); the one timer, when it fires, looks at the wait running then: past its deadline, the waiting
task is cancelled (and the wait raises TimeoutError); given a later deadline meanwhile, the timer sleeps
until that one; no wait running, it stops and the next wait arms it again. A stream of any length costs
one timer per `shortest` seconds, a whole answer one.
"""

from __future__ import annotations

import asyncio


class Deadline:
    def __init__(self, shortest: float | None) -> None:
        self.shortest = shortest  # the smallest limit this exchange will use: the timer never fires late
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None
        self._until: float | None = None  # the running wait's deadline (loop time); None: no wait running
        self._expired = False

    def start(self, timeout: float | None) -> None:
        """A wait begins that may last `timeout` seconds (None: as long as it takes)."""
        if timeout is None:
            return
        loop = self._loop = asyncio.get_running_loop()
        now = loop.time()
        self._task = asyncio.current_task()
        self._until = now + timeout
        self._expired = False
        if self._handle is None:
            self._handle = loop.call_at(now + min(timeout, self.shortest or timeout), self._check)
        elif self._handle.when() > self._until:  # a limit shorter than `shortest` said: never late
            self._handle.cancel()
            self._handle = loop.call_at(self._until, self._check)

    def stop(self) -> bool:
        """The wait ended; whether it ended because its deadline passed (then raise a timeout)."""
        self._until = None
        if not self._expired:
            return False
        self._expired = False
        task = self._task
        # the cancellation was this timer's alone: the caller turns it into a timeout; one of someone else's
        # besides (the client left) goes on
        return task is None or task.uncancel() == 0

    def close(self) -> None:
        self._until = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        until, loop = self._until, self._loop
        if until is None or loop is None or self._task is None:
            return  # between waits: the next one arms the timer again
        if loop.time() < until:
            self._handle = loop.call_at(until, self._check)
            return
        self._expired = True
        self._task.cancel()
