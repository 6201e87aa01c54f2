"""The UTC day a request is counted on: an account's requests a day (auth/state.py, auth/state_pg.py) and a
named key's spend a day (tenancy/store.py, tenancy/spend.py) share one definition. And the local day a ledger row
is filed under (observe/ledger_rows.py)."""

from __future__ import annotations

import functools
import time


def utc_day(ts: float | None = None) -> str:
    """"YYYY-MM-DD" of `ts` (now when None), in UTC: formatted once a day, not per request."""
    return _day(int((time.time() if ts is None else ts) // 86400))


@functools.lru_cache(maxsize=2)
def _day(days: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(days * 86400))


_local: tuple[float, float, str] = (0.0, 0.0, "")  # the local day last asked for: [start, end) and its name


def local_day(ts: float) -> str:
    """"YYYY-MM-DD" of `ts` in local time: formatted once a day, not per request (time.strftime and localtime
    run through the C library's time-zone and locale code: a request's code beyond what stays in cache)."""
    global _local
    start, end, name = _local
    if not start <= ts < end:
        t = time.localtime(ts)
        name = time.strftime("%Y-%m-%d", t)
        # midnight to midnight as the clock shows it (mktime: a day of 23 or 25 hours at a DST change)
        start = time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))
        end = time.mktime((t.tm_year, t.tm_mon, t.tm_mday + 1, 0, 0, 0, 0, 0, -1))
        if not start <= ts < end:  # a clock that skips its midnight (a zone moving its date): no window
            return name
        _local = (start, end, name)
    return name
