"""What a Model Studio account may still do: its limits, counted per Alibaba Cloud account — the sum over all of
its keys (the switch `key_accounts` maps a key to its account; by default each key is an account of its own).

- `rpm_limit`, `daily_limit`: requests a minute (the portal's "Requests throttling triggered.") and a UTC day
  ("Free allocated quota exceeded.");
- `tpm_limit`: prompt tokens a minute (the emulator's tokens): once the minute's reach it, pay-as-you-go's
  TPM answer;
- `burst_limit`: requests in one second, then the burst protection's answer;
- `concurrency_limit`: requests in flight (OpenAI-compatible chat), then a Coding Plan's concurrency answer;
- `plan_limits` {"5h", "week", "month"}: a Coding Plan's requests in its windows, as its FAQ defines them: the
  last 5 hours; the week from Monday 00:00 UTC+8; the month from `plan_month_day` (00:00 UTC+8). Counted on
  the plan's paths (`/v1/…`, `/apps/anthropic/…`), not pay-as-you-go's `/compatible-mode/v1/…`.

`count` returns the name of the limit that refuses a request (faults.LIMITS has each one's answer), or None.
"""

from __future__ import annotations

import calendar
import time
from collections import deque

UTC8_S = 8 * 3600
WINDOWS = {"5h": 5 * 3600, "minute": 60, "second": 1}


def week_of(now: float) -> int:
    """The week (Monday 00:00 UTC+8 onwards) `now` falls in."""
    return (int((now + UTC8_S) // 86400) + 3) // 7  # 1970-01-01 was a Thursday


def month_of(now: float, day: int) -> tuple[int, int]:
    """The subscription month (from day `day`, 00:00 UTC+8; a shorter month: its last day) `now` falls in."""
    t = time.gmtime(now + UTC8_S)
    if t.tm_mday >= min(day, calendar.monthrange(t.tm_year, t.tm_mon)[1]):
        return t.tm_year, t.tm_mon
    return (t.tm_year - 1, 12) if t.tm_mon == 1 else (t.tm_year, t.tm_mon - 1)


class Window:
    """The requests of one account in one sliding window, with their count and tokens kept as they come and go:
    counting costs the same at ten requests a minute as at fifty thousand."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.entries: deque[tuple[float, int]] = deque()
        self.tokens = 0

    def trim(self, now: float) -> "Window":
        while self.entries and now - self.entries[0][0] >= self.seconds:
            self.tokens -= self.entries.popleft()[1]
        return self

    def add(self, now: float, tokens: int) -> None:
        self.entries.append((now, tokens))
        self.tokens += tokens

    def __len__(self) -> int:
        return len(self.entries)


class Limits:
    """The counters (the caller holds the state's lock)."""

    def __init__(self) -> None:
        self.recent: dict[tuple[str, str], Window] = {}  # (account, window) -> its requests (time, tokens)
        self.buckets: dict[tuple[str, str], tuple[object, int]] = {}  # (account, "day"|"week"|"month") -> (which, n)
        self.in_flight: dict[str, int] = {}

    def _recent(self, account: str, window: str, now: float) -> Window:
        w = self.recent.get((account, window))
        if w is None:
            w = self.recent[(account, window)] = Window(WINDOWS[window])
        return w.trim(now)

    def _bucket(self, account: str, name: str, which: object) -> int:
        got, n = self.buckets.get((account, name), (which, 0))
        return n if got == which else 0

    def count(self, account: str, sw: dict, tokens: int, now: float, *, plan_path: bool = True) -> str | None:
        plan = (sw["plan_limits"] or {}) if plan_path else {}
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        periods = {"day": day, "week": week_of(now), "month": month_of(now, int(sw["plan_month_day"] or 1))}
        minute, second, hours = (self._recent(account, w, now) for w in ("minute", "second", "5h"))
        checks = (("5h", plan.get("5h"), len(hours)), ("week", plan.get("week"), self._bucket(account, "week", periods["week"])),
                  ("month", plan.get("month"), self._bucket(account, "month", periods["month"])),
                  ("quota", sw["daily_limit"], self._bucket(account, "day", day)),
                  ("throttle", sw["rpm_limit"], len(minute)), ("burst", sw["burst_limit"], len(second)),
                  ("tpm", sw["tpm_limit"], minute.tokens))
        for name, limit, used in checks:
            if limit and used >= limit:
                return name
        for w in (minute, second, hours):
            w.add(now, tokens)
        for name, which in periods.items():
            self.buckets[(account, name)] = (which, self._bucket(account, name, which) + 1)
        return None

    def today(self, account: str, now: float) -> int:
        return self._bucket(account, "day", time.strftime("%Y-%m-%d", time.gmtime(now)))

    def last_minute(self, account: str, now: float) -> int:
        return len(self._recent(account, "minute", now))

    def enter(self, account: str, limit: int) -> bool:
        """A request starts: False when `limit` requests of the account are in flight already."""
        if limit and self.in_flight.get(account, 0) >= limit:
            return False
        self.in_flight[account] = self.in_flight.get(account, 0) + 1
        return True

    def leave(self, account: str) -> None:
        self.in_flight[account] = max(0, self.in_flight.get(account, 0) - 1)
