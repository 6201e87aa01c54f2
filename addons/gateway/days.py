"""The UTC day a request is counted on: an account's requests a day (auth/state.py, auth/state_pg.py) and a
named key's spend a day (door/keystore.py, door/spend.py) share one definition."""

from __future__ import annotations

import functools
import time


def utc_day(ts: float | None = None) -> str:
    """"YYYY-MM-DD" of `ts` (now when None), in UTC: formatted once a day, not per request."""
    return _day(int((time.time() if ts is None else ts) // 86400))


@functools.lru_cache(maxsize=2)
def _day(days: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(days * 86400))
