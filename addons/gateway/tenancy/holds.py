"""Budgets exact across gateways: a request that a key's budgets count (tenancy/budgets.py) *holds* what it is
expected to cost from the moment it is admitted until its real cost is written, so requests running
at once on every gateway count against the budget before any of them has an answer.

A request is admitted while what the key spent plus what its running requests hold is below the budget (as
before: the request that reaches the budget runs, the next one is refused). What a request holds is the
largest cost a request of that key had on this gateway (its tokens, its USD), or its prompt's estimate when
none finished yet. Until one of the key's requests has finished on this gateway, the cost is unknown and
the gateway lets one request of that key run at a time: a budget is passed by at most one request in flight
per gateway, and only by what a request costs beyond the largest before it.

- `MemoryHolds`: one gateway (no `qwen_state_url`): the holds in this process.
- `SharedHolds`: the shared database: one statement under the key's advisory lock counts every gateway's
  spend and holds for every budget of the request (`qwen_key_hold_budgets`, tenancy/budget_sql.py); a hold is deleted in the transaction that writes its request's spend
  (tenancy/team_pg.py `write_spend`), so the cost is never counted twice nor missing. Holds die with their
  gateway: each gateway says it is alive every HEARTBEAT_S (`beat`), and the holds of one not seen for DEAD_S
  end, what it delivered becoming its key's spend (a delivered answer's cost is on its hold at once:
  `release`), what it had not delivered nothing; a key is never refused for another gateway's corpse longer
  (issue 68). A gateway that was only starved that long and writes its spend afterwards leaves out what was
  counted for it meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import Awaitable, Sequence
from typing import Any, NamedTuple, Protocol

from ..pricing.prices import USD, PriceTable
from ..storage.pg import Database
from ..storage.pg_follow import gateway_id
from .budget_sql import SETTLE_LOCK_MS
from .budgets import TOKENS, Line, since
from .liveness import Peers
from .schema import COMPONENT, PG_STEPS

HOLD_S = 900.0  # a hold's life: longer than any answer runs
HEARTBEAT_S = 2.0  # a gateway on the shared database says it is alive this often
DEAD_S = 15.0  # a gateway not seen this long is dead: its holds end (far above a busy machine's delays)
MARK_S = 2.0  # a delivered answer's end waits this long at most for its cost to be on its hold
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a lock_timeout
PROBE_WAIT_S = 120.0  # a request waiting for the first of its key's answers on this gateway waits no longer


class Hold(NamedTuple):
    name: str
    id: int  # 0: nothing held (the database said no)
    tokens: int
    usd: float
    at: float  # monotonic
    model: str = ""  # the model its request goes to: what a budget of one model counts


class Delivered(NamedTuple):
    """What an answer cost, on its hold once it was delivered: its key's spend if its gateway dies before writing it."""

    name: str
    day: str  # the UTC day its spend is on
    tokens: int
    usd: float
    model: str = ""  # its hold's: the model's day it is counted on too


class Holds(Protocol):
    shared: bool

    async def take(self, name: str, tokens: int, usd: float, lines: Sequence[Line], spent: Sequence[float],
                   today: str, model: str = "") -> tuple[Hold | None, tuple[float, ...]]:
        """A hold of (tokens, usd) on `model` when every budget line of the request is below its limit, counting
        what the key spent (`spent`, each line's, as memory holds it) and what running requests hold; and what
        each line counted."""
        ...

    def release(self, hold: Hold, delivered: Delivered | None = None) -> Awaitable[None] | None:
        """The hold ends (with its spend written); what a delivered answer cost is on its hold (the awaitable: its
        write, bounded, never a failure) unless `mark` put it there already."""
        ...

    def mark(self, hold: Hold, delivered: Delivered) -> Awaitable[None] | None: ...  # cost on the hold, once

    async def tick(self) -> None: ...  # every spend tick: what keeps the holds alive

    async def stop(self) -> None: ...  # the gateway stops


class MemoryHolds:
    shared = False

    def __init__(self) -> None:
        self.held: dict[str, dict[int, Hold]] = {}
        self._ids = 0

    async def take(self, name: str, tokens: int, usd: float, lines: Sequence[Line], spent: Sequence[float],
                   today: str, model: str = "") -> tuple[Hold | None, tuple[float, ...]]:
        mine = self.held.setdefault(name, {})
        now = time.monotonic()
        for gone in [i for i, h in mine.items() if h.at <= now - HOLD_S]:
            del mine[gone]
        counted = tuple(s + sum((h.tokens if line.budget.counts == TOKENS else h.usd) for h in mine.values()
                                if not line.model or h.model == line.model) for line, s in zip(lines, spent))
        if over(lines, counted):
            return None, counted
        self._ids += 1
        hold = mine[self._ids] = Hold(name, self._ids, tokens, usd, now, model)
        return hold, counted

    def release(self, hold: Hold, delivered: Delivered | None = None) -> Awaitable[None] | None:
        self.held.get(hold.name, {}).pop(hold.id, None)
        return None

    def mark(self, hold: Hold, delivered: Delivered) -> Awaitable[None] | None:
        return None  # what dies with this process dies with its spend

    async def tick(self) -> None:
        pass  # the holds live in this process, and die with it

    async def stop(self) -> None:
        pass


class SharedHolds:
    shared = True

    def __init__(self, db: Database) -> None:
        self.db = db
        self.gateway = gateway_id()  # this gateway, while it runs (its LISTEN session is named after it too)
        self.released: list[int] = []  # holds to delete with the next spend written
        self.delivered: dict[int, Delivered] = {}  # what the released holds' answers cost (on their rows too)
        self._beaten = 0.0  # when this gateway last said it is alive (monotonic)
        self._marks: set[asyncio.Task] = set()
        self._marked: set[int] = set()  # holds whose delivered cost is on their row (or on its way)
        self._peers = Peers(DEAD_S)  # which other gateways holding something stopped beating

    async def take(self, name: str, tokens: int, usd: float, lines: Sequence[Line], spent: Sequence[float],
                   today: str, model: str = "") -> tuple[Hold | None, tuple[float, ...]]:
        await self.db.amigrate(COMPONENT, PG_STEPS)
        if not self._beaten:  # alive before its first hold: another gateway never takes it for dead
            await self.beat()
        rows = await self.db.fetch(  # what memory holds (`spent`) is not asked: the database counts every gateway's
            "SELECT hold_id, spent FROM qwen_key_hold_budgets(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (self.gateway, DEAD_S, HOLD_S, name, model, today, tokens, usd, [line.budget.counts for line in lines],
             [since(line.budget, today) for line in lines], [line.model for line in lines],
             [float(line.limit) for line in lines]))
        hold_id, counted = rows[0]
        return (Hold(name, int(hold_id), tokens, usd, time.monotonic(), model) if hold_id else None), tuple(counted)

    def release(self, hold: Hold, delivered: Delivered | None = None) -> Awaitable[None] | None:
        self.released.append(hold.id)
        if delivered is None:
            return None
        self.delivered[hold.id] = delivered
        return self.mark(hold, delivered)

    def mark(self, hold: Hold, delivered: Delivered) -> Awaitable[None] | None:
        """A delivered answer's cost on its hold's row, before the answer's end goes out: should this gateway die
        before it writes the spend, another counts it (`qwen_key_settle`). Once per hold; MARK_S at most."""
        if hold.id in self._marked:
            return None
        self._marked.add(hold.id)
        task = asyncio.get_running_loop().create_task(self._mark(hold.id, delivered), name="qwen: hold delivered")
        self._marks.add(task)
        task.add_done_callback(self._marks.discard)
        return task

    async def _mark(self, hold_id: int, delivered: Delivered) -> None:
        with contextlib.suppress(Exception):  # the database away or slow: the spend tick writes it as always
            await asyncio.wait_for(self.db.execute("UPDATE key_holds SET done_tokens = %s, done_usd = %s WHERE "
                                                   "id = %s", (delivered.tokens, delivered.usd, hold_id)), MARK_S)

    def take_released(self) -> tuple[list[int], dict[int, Delivered]]:
        out, self.released = self.released, []
        self._marked.difference_update(out)
        return out, {i: self.delivered.pop(i) for i in out if i in self.delivered}

    def unwritten(self, ids: list[int], delivered: dict[int, Delivered]) -> None:
        """The batch that would have deleted them failed: they go with the next one (with their spend)."""
        self.released[:0] = ids
        self.delivered.update(delivered)

    async def tick(self) -> None:
        await self.beat()

    async def beat(self) -> None:
        """Every HEARTBEAT_S (the spend tick asks): this gateway is alive; dead gateways' holds settled."""
        now = time.monotonic()
        if now - self._beaten < HEARTBEAT_S:
            return
        self._beaten = now
        await self.db.execute("INSERT INTO qwen_gateways (id, host, pid, started, seen, quiet) VALUES (%s, %s, %s, "
                              "extract(epoch FROM clock_timestamp()), extract(epoch FROM clock_timestamp()), %s) "
                              "ON CONFLICT (id) DO UPDATE SET seen = excluded.seen, quiet = excluded.quiet",
                              (self.gateway, socket.gethostname(), os.getpid(), json.dumps(self._peers.quiet(now))))
        beats = await self.db.fetch("SELECT id, seen FROM qwen_gateways")  # every peer: qwen-keys reads their quiet
        gone = self._peers.gone(((str(g), seen) for g, seen in beats), time.monotonic(), self.gateway)
        await self.db.run(lambda conn: self._settle(conn, gone))

    @staticmethod
    async def _settle(conn: Any, gone: list[str]) -> None:
        """Gone gateways' holds settled (tenancy/liveness.py), unless a row they need is held by another session (a
        stuck gateway's spend transaction): then at a later beat (their holds count meanwhile)."""
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = {SETTLE_LOCK_MS}")
                await conn.execute("SELECT qwen_key_settle_gone(NULL, %s, %s)", (gone, HOLD_S))
        except Exception as e:
            if getattr(e, "sqlstate", "") != LOCK_NOT_AVAILABLE:
                raise

    async def stop(self) -> None:
        """A stop: this gateway says it no longer runs (what it held is written by then)."""
        with contextlib.suppress(Exception):
            await self.db.execute("DELETE FROM qwen_gateways WHERE id = %s", (self.gateway,))


def over(lines: Sequence[Line], counted: Sequence[float]) -> bool:
    """Whether a budget reached its limit: the request that reaches it ran, the next is refused."""
    return any(c >= line.limit for line, c in zip(lines, counted))


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


def delivered(prices: PriceTable, billing: str, model: str, usage: object, hold: Hold, day: str,
              listed: tuple | None = None) -> Delivered | None:
    """What the answer of `hold`'s request cost by Qwen's usage (its tokens; its USD when its model is priced in USD,
    by the account's own list from Qwen first: `listed`), or None (no usage)."""
    if not isinstance(usage, dict):
        return None
    tokens = sum(v for k in ("prompt_tokens", "completion_tokens") if type(v := usage.get(k)) is int)
    charged = prices.charge(billing, model, usage, listed=listed)
    usd = (charged.amount or 0.0) if charged is not None and charged.unit == USD else 0.0
    return Delivered(hold.name, day, tokens, usd, hold.model) if tokens > 0 else None
