"""How long what ran out keeps an account away (a `Window`, read from DashScope's error by the upstream), and
how the account's state says it.

Coding Plan windows, as its FAQ (Model Studio, "Coding Plan FAQ") defines them: the 5-hour quota comes back
5 hours later; the weekly one at Monday 00:00 UTC+8; the monthly one at 00:00 UTC+8 of the subscription's
day of the month (`month_day` of the key account; unknown: the next 00:00 UTC+8, when any monthly reset
happens, so a spent account is tried once a day); `usage` (heavy use in a short time) "usually" after an
hour. A daily quota (Qwen OAuth's free tier) at the next reset hour. An upstream's `Retry-After` wins.
Throttles (requests or tokens per minute, burst, concurrency) last seconds: the pool's doubling backoff.
"""

from __future__ import annotations

import calendar
import time

from ...accounts import Window
from ...auth.names import iso

UTC8_S = 8 * 3600
DAY_S = 86400
FIVE_HOURS_S = 5 * 3600
USAGE_S = 3600
THROTTLE_FIRST_S = 1.0
THROTTLE_MAX_S = 30.0

QUOTA_WINDOWS = (Window.FIVE_HOURS, Window.WEEK, Window.MONTH, Window.USAGE, Window.DAY)
# What each window is, in the words `qwen-auth status`, /health and a refused client read
LABELS = {
    Window.FIVE_HOURS: "Coding Plan 5-hour quota",
    Window.WEEK: "Coding Plan weekly quota",
    Window.MONTH: "Coding Plan monthly quota",
    Window.USAGE: "Coding Plan short-term usage limit",
    Window.DAY: "daily quota",
    Window.RPM: "requests per minute (RPM)",
    Window.TPM: "tokens per minute (TPM)",
    Window.BURST: "burst protection (requests rose too quickly)",
    Window.CONCURRENCY: "Coding Plan concurrent requests",
}


def next_reset(now: float, reset_hour_utc: int = 0) -> float:
    """When a daily quota comes back: the next `reset_hour_utc`:00 UTC after `now`.

    Qwen's/DashScope's daily reset time is NOT verified: the Qwen OAuth proxies assumed UTC midnight, others
    00:00 Beijing time (16:00 UTC). Hence a setting (AuthSettings.quota_reset_hour_utc,
    QWEN_QUOTA_RESET_HOUR_UTC), not a constant; a `Retry-After` from upstream wins over it."""
    start = now - now % DAY_S + reset_hour_utc * 3600
    while start <= now:
        start += DAY_S
    return start


def next_monday_utc8(now: float) -> float:
    """The next Monday 00:00 UTC+8 after `now`."""
    local = now + UTC8_S
    midnight = local - local % DAY_S
    return midnight + (7 - time.gmtime(local).tm_wday) * DAY_S - UTC8_S


def next_month_day_utc8(now: float, day: int | None) -> float:
    """The next 00:00 UTC+8 of day `day` of a month (a shorter month: its last day) after `now`; with no day,
    the next 00:00 UTC+8."""
    local = now + UTC8_S
    if day is None:
        return local - local % DAY_S + DAY_S - UTC8_S
    t = time.gmtime(local)
    year, month = t.tm_year, t.tm_mon
    while True:
        at = calendar.timegm((year, month, min(day, calendar.monthrange(year, month)[1]), 0, 0, 0)) - UTC8_S
        if at > now:
            return at
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def quota_until(window: Window | None, now: float, *, reset_hour_utc: int = 0, month_day: int | None = None) -> float:
    """When an account whose quota `window` ran out at `now` is back."""
    if window is Window.FIVE_HOURS:
        return now + FIVE_HOURS_S
    if window is Window.WEEK:
        return next_monday_utc8(now)
    if window is Window.MONTH:
        return next_month_day_utc8(now, month_day)
    if window is Window.USAGE:
        return now + USAGE_S
    return next_reset(now, reset_hour_utc)


def throttle_wait(retry_after: float | None, previous: float | None) -> float:
    """How long a throttled account waits: `Retry-After` (at most THROTTLE_MAX_S), else 1 s doubling up to it
    while it keeps being throttled (`previous`: its last wait)."""
    if retry_after is not None and retry_after >= 0:
        return min(retry_after, THROTTLE_MAX_S)
    return THROTTLE_FIRST_S if previous is None else min(previous * 2, THROTTLE_MAX_S)


def quota_error(window: Window | None, detail: str | None, until: float) -> str:
    """The account's last error while a quota keeps it away."""
    what = f"quota exhausted: {LABELS[window]}, back at {iso(until)}" if window in LABELS else "quota exhausted"
    return what + (f' (Qwen said: "{detail}")' if detail else "")


def throttle_error(window: Window | None, detail: str | None) -> str:
    """The account's last error while a throttle keeps it away (it starts with "throttled": pool.py reads it)."""
    what = f"throttled: {LABELS[window]}" if window in LABELS else "throttled"
    return what + (f' (Qwen said: "{detail}")' if detail and window in LABELS else "")


def window_of(last_error: str | None) -> str | None:
    """Which window an account's last error names (for status rows), or None."""
    if last_error:
        for window, label in LABELS.items():
            if f": {label}" in last_error:
                return window.value
    return None
