"""Budgets exact across gateways: a request of a key with a budget (`--daily-tokens`, `--monthly-usd`) *holds*
what it is expected to cost from the moment it is admitted until its real cost is written, so requests running
at once on every gateway count against the budget before any of them has an answer.

A request is admitted while what the key spent plus what its running requests hold is below the budget (as
before: the request that reaches the budget runs, the next one is refused). What a request holds is the
largest cost a request of that key had on this gateway (its tokens, its USD), or its prompt's estimate when
none finished yet. Until one of the key's requests has finished on this gateway, the cost is unknown and
the gateway lets one request of that key run at a time: a budget is passed by at most one request in flight
per gateway, and only by what a request costs beyond the largest before it.

- `MemoryHolds`: one gateway (no `qwen_state_url`): the holds in this process.
- `SharedHolds`: the shared database: one statement under the key's advisory lock counts every gateway's
  spend and holds; a hold is deleted in the transaction that writes its request's spend
  (tenancy/team_pg.py `write_spend`), so the cost is never counted twice nor missing. A hold whose
  gateway died counts until HOLD_S after it was made.
"""

from __future__ import annotations

import asyncio
import time
from typing import NamedTuple, Protocol

from ..storage.pg import Database
from .schema import COMPONENT, PG_STEPS

HOLD_S = 900.0  # a hold's life: longer than any answer runs; a dead gateway's holds count no longer than this
PROBE_WAIT_S = 120.0  # a request waiting for the first of its key's answers on this gateway waits no longer


class Hold(NamedTuple):
    name: str
    id: int  # 0: nothing held (the database said no)
    tokens: int
    usd: float
    at: float  # monotonic


class Spending(NamedTuple):
    """What a key spent (its holds included), as the backend counted it when it answered."""

    tokens_today: int
    usd_month: float


class Holds(Protocol):
    shared: bool

    async def take(self, name: str, tokens: int, usd: float, daily_tokens: int, monthly_usd: float,
                   spent: Spending, today: str) -> tuple[Hold | None, Spending]: ...

    def release(self, hold: Hold) -> None: ...


class MemoryHolds:
    shared = False

    def __init__(self) -> None:
        self.held: dict[str, dict[int, Hold]] = {}
        self._ids = 0

    async def take(self, name: str, tokens: int, usd: float, daily_tokens: int, monthly_usd: float,
                   spent: Spending, today: str) -> tuple[Hold | None, Spending]:
        mine = self.held.setdefault(name, {})
        now = time.monotonic()
        for gone in [i for i, h in mine.items() if h.at <= now - HOLD_S]:
            del mine[gone]
        counted = Spending(spent.tokens_today + sum(h.tokens for h in mine.values()),
                           spent.usd_month + sum(h.usd for h in mine.values()))
        if over(counted, daily_tokens, monthly_usd):
            return None, counted
        self._ids += 1
        hold = mine[self._ids] = Hold(name, self._ids, tokens, usd, now)
        return hold, counted

    def release(self, hold: Hold) -> None:
        self.held.get(hold.name, {}).pop(hold.id, None)


class SharedHolds:
    shared = True

    def __init__(self, db: Database) -> None:
        self.db = db
        self.released: list[int] = []  # holds to delete with the next spend written

    async def take(self, name: str, tokens: int, usd: float, daily_tokens: int, monthly_usd: float,
                   spent: Spending, today: str) -> tuple[Hold | None, Spending]:
        await self.db.amigrate(COMPONENT, PG_STEPS)
        rows = await self.db.fetch("SELECT hold_id, tokens_today, usd_month FROM qwen_key_hold(%s, %s, %s, %s, %s, "
                                   "%s, %s, %s)", (name, today, today[:8] + "01", tokens, usd, daily_tokens,
                                                   monthly_usd, HOLD_S))
        hold_id, tokens_today, usd_month = rows[0]
        counted = Spending(int(tokens_today), float(usd_month))
        return (Hold(name, int(hold_id), tokens, usd, time.monotonic()) if hold_id else None), counted

    def release(self, hold: Hold) -> None:
        self.released.append(hold.id)

    def take_released(self) -> list[int]:
        out, self.released = self.released, []
        return out

    def unwritten(self, ids: list[int]) -> None:
        """The batch that would have deleted them failed: they go with the next one (with their spend)."""
        self.released[:0] = ids


def over(spent: Spending, daily_tokens: int, monthly_usd: float) -> bool:
    return bool(daily_tokens and spent.tokens_today >= daily_tokens or monthly_usd and spent.usd_month >= monthly_usd)


class Costs:
    """The largest cost of a finished request, per key, on this gateway: what its next requests hold. While a
    key has none, its requests run one at a time here (the probe: the first answer tells the cost)."""

    def __init__(self) -> None:
        self.largest: dict[str, tuple[int, float]] = {}
        self._probing: dict[str, asyncio.Event] = {}

    def learn(self, name: str, tokens: int, usd: float) -> None:
        old = self.largest.get(name, (0, 0.0))
        self.largest[name] = (max(old[0], tokens), max(old[1], usd))

    async def expected(self, name: str, prompt_tokens: int, ceiling: int | None = None
                       ) -> tuple[tuple[int, float], bool]:
        """(tokens, USD) to hold, and whether this request is the key's probe (`probed` when it ends). `ceiling`:
        the most the request can cost in tokens (its prompt and output cap), given for a key with a token budget
        alone — held as it is, at once."""
        if ceiling is not None:
            return (max(ceiling, prompt_tokens), 0.0), False
        while name not in self.largest:
            probe = self._probing.get(name)
            if probe is None:
                self._probing[name] = asyncio.Event()
                return (prompt_tokens, 0.0), True
            try:
                await asyncio.wait_for(probe.wait(), PROBE_WAIT_S)
            except TimeoutError:
                break  # the probe never ended (an answer running for minutes): no longer one at a time
        tokens, usd = self.largest.get(name, (0, 0.0))
        return (max(tokens, prompt_tokens), usd), False

    def probed(self, name: str) -> None:
        """The probe ended (answered, refused or failed): the next request goes (or probes again)."""
        event = self._probing.pop(name, None)
        if event is not None:
            event.set()


def ceiling(body: object, prompt: int) -> int | None:
    """The most a request can cost in tokens: its prompt and the output cap it sent, for each of its `n` answers
    (None: no cap sent). A key with a USD budget too is not bounded by it (the caller asks only for token budgets)."""
    cap = body.get("max_completion_tokens", body.get("max_tokens")) if isinstance(body, dict) else None
    n = body.get("n", 1) if isinstance(body, dict) else 1
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1 or not isinstance(n, int) or n < 1:
        return None
    return prompt + cap * n
