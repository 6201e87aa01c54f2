"""Log lines for events that come in storms — hostile connections refused by the thousand, a process out of
file descriptors failing accept() on every turn of the event loop: a bounded number of lines however many
events, each line saying how many it stands for.

The first event of a kind is logged at once; the others of the next `period` seconds are counted, and their
count is logged in one line when the period ends (then a new period starts). So a kind writes at most one
line per period, and nothing is hidden: every event is in some line's count.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

PERIOD_S = 10.0


@dataclass
class _Kind:
    line: Callable[[int], str]  # the line for n events of this kind
    level: int
    since: float  # when this kind's last line was written
    counted: int = 0  # events since then, not in any line yet
    flush: asyncio.TimerHandle | None = None


class LogTally:
    def __init__(self, log: logging.Logger, period: float = PERIOD_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.period = period
        self.clock = clock
        self._kinds: dict[str, _Kind] = {}

    def note(self, kind: str, line: Callable[[int], str], level: int = logging.WARNING, count: int = 1) -> None:
        """`count` events of `kind`; `line(n)` renders the line for n of them (called only when one is due)."""
        now = self.clock()
        k = self._kinds.get(kind)
        if k is None or (k.counted == 0 and now - k.since >= self.period):
            self._kinds[kind] = _Kind(line, level, since=now)
            self.log.log(level, line(count))
            return
        k.line, k.level = line, level
        k.counted += count
        if k.flush is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop (a unit test): the count goes out with the next event
                if now - k.since >= self.period:
                    self._flush(kind)
                return
            k.flush = loop.call_later(max(0.0, k.since + self.period - now), self._flush, kind)

    def _flush(self, kind: str) -> None:
        k = self._kinds.get(kind)
        if k is None:
            return
        k.flush = None
        if k.counted:
            self.log.log(k.level, k.line(k.counted))
            k.counted, k.since = 0, self.clock()

    def close(self) -> None:
        """Write what is still counted (at shutdown)."""
        for kind, k in list(self._kinds.items()):
            if k.flush is not None:
                k.flush.cancel()
            self._flush(kind)


class Once:
    """A line said once per `period` for each key (a client's mistake, repeated at every retry), at most `kept`
    keys remembered: the oldest is forgotten first (and may be said again)."""

    def __init__(self, period: float = 3600.0, kept: int = 256, clock: Callable[[], float] = time.monotonic) -> None:
        self.period, self.kept, self.clock = period, kept, clock
        self.said: dict[str, float] = {}  # key -> when it was said, oldest first

    def due(self, key: str) -> bool:
        """Whether the line for `key` is to be said now (then it is counted as said)."""
        now = self.clock()
        if now - self.said.get(key, -self.period) < self.period:
            return False
        self.said.pop(key, None)
        if len(self.said) >= self.kept:
            self.said.pop(next(iter(self.said)))
        self.said[key] = now
        return True
