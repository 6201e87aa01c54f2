"""What each named key spent this UTC day and month, in memory: what the store said last (all gateways'
spend), plus what this gateway charged since and has not written yet. Budgets are checked against it on
every request of a key that has one (no I/O); it is written in batches and read again by tenancy/team.py.

Budgets count what Qwen reported, once an answer is complete: requests already running when a key
reaches its budget finish (a stream is never cut), and gateways sharing a database see each other's spend
within about a second (the batch) — a budget can be passed by what was in flight meanwhile."""

from __future__ import annotations

import calendar
import dataclasses
import time

from ..days import utc_day
from .schema import Delta, Spent, Tally


def next_midnight(now: float) -> float:
    t = time.gmtime(now)
    return calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0)) + 86400


def next_month(now: float) -> float:
    t = time.gmtime(now)
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0))


class SpendBook:
    """Used from the event loop only."""

    def __init__(self) -> None:
        self.totals: dict[str, Spent] = {}  # as last read, plus what was charged since
        self.pending: dict[tuple[str, str], Delta] = {}  # charged, not yet handed to the store
        self.writing: dict[tuple[str, str], Delta] = {}  # handed to the store, not yet committed
        self._day = ""
        self._day_ends = 0.0
        self._month_ends = 0.0

    def _roll(self, now: float) -> None:
        """A new UTC day (month): the day's (month's) counts start again."""
        if now < self._day_ends:
            return
        new_month = now >= self._month_ends
        self._day, self._day_ends, self._month_ends = utc_day(now), next_midnight(now), next_month(now)
        for name, s in self.totals.items():
            models = {} if new_month else {m: Tally(0, t.usd_month) for m, t in s.models.items()}
            s = dataclasses.replace(s, tokens_today=0, requests_today=0, refused_today=0, models=models)
            self.totals[name] = dataclasses.replace(s, usd_month=0.0, plan_requests_month=0, plan_tokens_month=0,
                                                    unpriced_month=0) if new_month else s

    def spent(self, name: str, now: float | None = None) -> Spent:
        self._roll(time.time() if now is None else now)
        return self.totals.get(name) or Spent()

    def charge(self, name: str, *, requests: int = 0, refused: int = 0, tokens: int = 0, usd: float = 0.0,
               plan_requests: int = 0, plan_tokens: int = 0, unpriced: int = 0, now: float | None = None,
               model: str = "") -> None:
        """Once per request of a named key: counted in place (no copies: it is on every request's way out); its
        tokens and USD on `model` too (what a budget of one model counts)."""
        now = time.time() if now is None else now
        self._roll(now)
        s = self.totals.get(name)
        if s is None:
            s = self.totals[name] = Spent()
        d = self.pending.get((name, self._day))
        if d is None:
            d = self.pending[(name, self._day)] = Delta()
        s.tokens_today += tokens
        d.tokens += tokens
        s.requests_today += requests
        d.requests += requests
        if refused:
            s.refused_today += refused
            d.refused += refused
        if usd:
            s.usd_month += usd
            d.usd += usd
        if unpriced:  # an answer no price counted: its USD is unknown, said beside the month's
            s.unpriced_month += unpriced
            d.unpriced += unpriced
        if plan_requests or plan_tokens:
            s.plan_requests_month += plan_requests
            s.plan_tokens_month += plan_tokens
            d.plan_requests += plan_requests
            d.plan_tokens += plan_tokens
        if requests:
            s.last_used = d.last_used = now
        if model and (tokens or usd):
            tally = s.models.setdefault(model, Tally())
            tally.tokens_today += tokens
            tally.usd_month += usd
            added = d.models.setdefault(model, [0, 0.0])
            added[0] += tokens
            added[1] += usd

    def take_pending(self) -> dict[tuple[str, str], Delta]:
        """What to write now (kept as `writing` until `written`)."""
        out, self.pending = self.pending, {}
        for k, d in out.items():
            self.writing[k] = d
        return out

    def written(self, deltas: dict[tuple[str, str], Delta], ok: bool) -> None:
        for k in deltas:
            self.writing.pop(k, None)
        if not ok:  # kept for the next batch (the database is down: nothing charged is lost)
            for k, d in deltas.items():
                mine = self.pending.setdefault(k, Delta())
                for f in dataclasses.fields(Delta):
                    if f.name not in ("last_used", "models"):
                        setattr(mine, f.name, getattr(mine, f.name) + getattr(d, f.name))
                for model, (tokens, usd) in d.models.items():
                    added = mine.models.setdefault(model, [0, 0.0])
                    added[0] += tokens
                    added[1] += usd
                mine.last_used = max(mine.last_used or 0, d.last_used or 0) or None

    def forget(self, name: str) -> None:
        """A deleted key: what it spent is no one's (its name may be used again, from zero)."""
        self.totals.pop(name, None)
        for book in (self.pending, self.writing):
            for k in [k for k in book if k[0] == name]:
                del book[k]

    def replace(self, read: dict[str, Spent], name: str | None = None) -> None:
        """What the store holds now (every key, or `name`'s), plus what it does not hold yet."""
        self._roll(time.time())
        names = set(read) | ({n for n, _ in self.pending} | {n for n, _ in self.writing}) if name is None else {name}
        if name is None:
            self.totals = {}
        for n in names:
            s = read.get(n) or Spent()
            for (who, day), d in (*self.pending.items(), *self.writing.items()):
                if who == n and day == self._day:
                    s = dataclasses.replace(s, tokens_today=s.tokens_today + d.tokens,
                                            requests_today=s.requests_today + d.requests,
                                            refused_today=s.refused_today + d.refused, usd_month=s.usd_month + d.usd,
                                            plan_requests_month=s.plan_requests_month + d.plan_requests,
                                            plan_tokens_month=s.plan_tokens_month + d.plan_tokens,
                                            unpriced_month=s.unpriced_month + d.unpriced, models=dict(s.models))
                    for model, (tokens, usd) in d.models.items():
                        t = s.models.get(model) or Tally()
                        s.models[model] = Tally(t.tokens_today + int(tokens), t.usd_month + usd)
            self.totals[n] = s

    @property
    def day(self) -> str:
        self._roll(time.time())
        return self._day
