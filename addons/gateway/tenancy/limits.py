"""Requests and tokens per minute for each named key: a sliding window, exact on one gateway and across
every gateway on one PostgreSQL database.

A key with `--rpm N` has at most N requests admitted in any minute. What a key may still do is handed out
as *grants* by a backend: `MemoryGrants` (one gateway: the window in this process) or `SharedGrants`
(tenancy/team_pg.py: one statement under the key's advisory lock, on the database's clock). A grant counts in
the window for `window` seconds from when it was made.

Round trips to the database are made rare by leases: a gateway takes a chunk sized to the limit (1 when
the limit is small, so the count stays exact under any concurrency; up to limit/60 for large limits) and
spends it locally for at most `lease` seconds; what is left is given back. A shared grant therefore
counts for 60 s + `lease`: requests made from one grant all happen within `lease` of it, so no minute ever
holds more than N requests (the price: a slot frees a `lease` later than a minute after its request).

tpm reserves an estimate of the request's tokens before it goes upstream and settles the grant with what
Qwen reported once the answer is complete (tenancy/team.py).

Each backend answer also says how much of the window is in use and when it is empty again: what the
rate-limit headers tell the client (`Limiter.state`, tenancy/rate_headers.py), as of the last answer (on
PostgreSQL with leases: at most a lease old)."""

from __future__ import annotations

import asyncio
import collections
import math
import time
from dataclasses import dataclass
from typing import NamedTuple, Protocol

RPM, TPM = "rpm", "tpm"
WINDOW_S = 60.0


class Taken(NamedTuple):  # a tuple: made twice per limited request
    name: str
    kind: str
    amount: int
    grant: int  # the grant it came from: settled or given back through it


class Answer(NamedTuple):
    """A backend's answer to a take."""

    granted: int  # 0, or between want and chunk
    grant: int  # its id
    retry_after: float  # when 0 was granted: seconds until the oldest grant leaves the window
    used: int  # what the window holds now (this grant included)
    reset_after: float  # seconds until the window is empty


class Grants(Protocol):
    window: float  # seconds a grant counts
    lease: float  # seconds a gateway may spend what it took (0: all of it is spent at once)

    def chunk(self, limit: int, want: int) -> int: ...

    def try_now(self, name: str, kind: str, want: int, limit: int) -> Answer | None:
        """`take` without waiting when the backend can (in memory); None when it must ask (a database)."""
        ...

    async def take(self, name: str, kind: str, want: int, chunk: int, limit: int) -> Answer:
        """`want` (up to `chunk`) if it fits under `limit`, else nothing and when to retry."""
        ...

    def settle(self, name: str, kind: str, grant: int, delta: int) -> None:
        """Add `delta` to a grant (negative: give back), off the request's path."""
        ...

    async def flush(self) -> None:
        """Write the settlements (every second)."""
        ...


class _Window:
    """One key's grants of one kind, oldest first; each grant is [at, amount, id] (settled in place)."""

    __slots__ = ("grants", "by_id", "used")

    def __init__(self) -> None:
        self.grants: collections.deque[list] = collections.deque()
        self.by_id: dict[int, list] = {}
        self.used = 0


class MemoryGrants:
    """One gateway's window (no qwen_state_url): exact, nothing shared, no lease needed."""

    window = WINDOW_S
    lease = 0.0

    def __init__(self) -> None:
        self._windows: dict[tuple[str, str], _Window] = {}
        self._ids = 0

    def chunk(self, limit: int, want: int) -> int:
        return want

    def try_now(self, name: str, kind: str, want: int, limit: int) -> Answer:
        return self.take_now(name, kind, want, limit)

    async def take(self, name: str, kind: str, want: int, chunk: int, limit: int) -> Answer:
        return self.take_now(name, kind, want, limit)

    def take_now(self, name: str, kind: str, want: int, limit: int, now: float | None = None) -> Answer:
        now = time.monotonic() if now is None else now
        w = self._windows.get((name, kind))
        if w is None:
            w = self._windows[(name, kind)] = _Window()
        grants, horizon = w.grants, now - self.window
        while grants and grants[0][0] <= horizon:  # left the window
            _, amount, gid = grants.popleft()
            w.used -= amount
            del w.by_id[gid]
        if w.used + want > limit:
            return Answer(0, 0, max((grants[0][0] if grants else now) + self.window - now, 0.0), w.used,
                          max(grants[-1][0] + self.window - now, 0.0) if grants else 0.0)
        self._ids += 1
        entry = [now, want, self._ids]
        grants.append(entry)
        w.by_id[self._ids] = entry
        w.used += want
        return Answer(want, self._ids, 0.0, w.used, self.window)

    async def flush(self) -> None:
        return None  # nothing to write: the window is this process's

    def settle(self, name: str, kind: str, grant: int, delta: int) -> None:
        w = self._windows.get((name, kind))
        entry = w.by_id.get(grant) if w is not None else None
        if w is not None and entry is not None:  # a grant that already left the window counts no more
            new = max(0, entry[1] + delta)
            w.used += new - entry[1]
            entry[1] = new


@dataclass
class Lease:
    grant: int
    remaining: int
    until: float  # monotonic


class Limiter:
    """Takes from the local lease when it can (no I/O), else from the backend (one at a time per key)."""

    def __init__(self, grants: Grants) -> None:
        self.grants = grants
        self._leases: dict[tuple[str, str], Lease] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._seen: dict[tuple[str, str], tuple[int, float]] = {}  # the window's use and end, at the last answer

    def take_now(self, name: str, kind: str, want: int, limit: int) -> Taken | float | None:
        """`take` when no waiting is needed (the lease has enough, or the backend is in memory), else None."""
        key = (name, kind)
        taken = self._from_lease(key, want)
        if taken is not None:
            return taken
        got = self.grants.try_now(name, kind, want, limit)
        return None if got is None else self._granted(key, want, got)

    async def take(self, name: str, kind: str, want: int, limit: int) -> Taken | float:
        """What was taken, or the seconds until the window has room (a refusal)."""
        key = (name, kind)
        got = self.take_now(name, kind, want, limit)
        if got is not None:
            return got
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:  # concurrent requests wait for the one round trip instead of making their own
            taken = self._from_lease(key, want)
            if taken is not None:
                return taken
            self._end_lease(key)
            answer = await self.grants.take(name, kind, want, self.grants.chunk(limit, want), limit)
            return self._granted(key, want, answer)

    def _granted(self, key: tuple[str, str], want: int, got: Answer) -> Taken | float:
        granted, grant, retry_after, used, reset_after = got
        self._seen[key] = (used, time.monotonic() + reset_after)
        if granted < want:
            return retry_after
        if granted > want:
            self._leases[key] = Lease(grant, granted - want, time.monotonic() + self.grants.lease)
        return Taken(key[0], key[1], want, grant)

    def state(self, name: str, kind: str, limit: int) -> tuple[int, float]:
        """(what the key may still take, seconds until its window is empty), as of the backend's last answer
        and what this gateway's lease still holds."""
        now = time.monotonic()
        used, ends = self._seen.get((name, kind), (0, 0.0))
        if ends <= now:
            return limit, 0.0
        lease = self._leases.get((name, kind))
        spare = lease.remaining if lease is not None and lease.until > now else 0
        return max(0, min(limit, limit - used + spare)), ends - now

    def _from_lease(self, key: tuple[str, str], want: int) -> Taken | None:
        lease = self._leases.get(key)
        if lease is None or lease.remaining < want or lease.until <= time.monotonic():
            return None
        lease.remaining -= want
        return Taken(key[0], key[1], want, lease.grant)

    def _end_lease(self, key: tuple[str, str]) -> None:
        lease = self._leases.pop(key, None)
        if lease is not None and lease.remaining:
            self.grants.settle(key[0], key[1], lease.grant, -lease.remaining)

    def give_back(self, taken: Taken) -> None:
        """A request refused after it took (its tpm was refused after its rpm slot)."""
        lease = self._leases.get((taken.name, taken.kind))
        if lease is not None and lease.grant == taken.grant and lease.until > time.monotonic():
            lease.remaining += taken.amount
        else:
            self.grants.settle(taken.name, taken.kind, taken.grant, -taken.amount)

    def settle(self, taken: Taken, used: int) -> None:
        """tpm: the tokens Qwen reported replace the estimate reserved. While its lease runs, the difference
        comes out of (or goes back into) the lease: the grant already counts the whole chunk."""
        delta = used - taken.amount
        if not delta:
            return
        lease = self._leases.get((taken.name, taken.kind))
        if lease is not None and lease.grant == taken.grant and lease.until > time.monotonic() \
                and lease.remaining >= delta:
            lease.remaining -= delta
        else:
            self.grants.settle(taken.name, taken.kind, taken.grant, delta)

    def sweep(self, everything: bool = False) -> None:
        """Expired leases give back what they did not spend (called every second; at shutdown, all of them)."""
        now = time.monotonic()
        for key in [k for k, lease in self._leases.items() if everything or lease.until <= now]:
            self._end_lease(key)


def shared_chunk(limit: int, want: int) -> int:
    """A lease sized to the limit: 1 up to 119 a minute (each request asks the database: exact under any
    concurrency), then 1/60 of the limit (a round trip every second or so at full speed)."""
    return max(want, limit // 60 if limit >= 120 else want)


def retry_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds))
