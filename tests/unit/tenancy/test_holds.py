"""Budget holds (tenancy/holds.py): running requests count against a key's budget before their cost
is known, in memory and on a real PostgreSQL (two gateways' holds in one count, a hold deleted with the spend
it becomes, 64-bit counts), and a key whose cost is unknown runs one request at a time on a gateway."""

from __future__ import annotations

import asyncio
from typing import NamedTuple

import pytest

from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from qwen_gateway.tenancy.budgets import DAILY_TOKENS, MONTHLY_USD, Line
from qwen_gateway.tenancy.holds import Costs, Holds, MemoryHolds, SharedHolds
from qwen_gateway.tenancy.schema import COMPONENT, PG_STEPS, Delta
from qwen_gateway.tenancy.team_pg import SharedKeys
from qwen_gateway.storage.pg import Database
from qwen_gateway.storage.pg_tasks import close_pools

TODAY = "2026-03-14"


class Spending(NamedTuple):
    """What a key spent (its holds included) on the first release's two budgets, as the backend counted it."""

    tokens_today: int
    usd_month: float


NONE = Spending(0, 0.0)


async def take(holds: Holds, name: str, tokens: int, usd: float, daily_tokens: int, monthly_usd: float,
               spent: Spending, today: str):
    """A hold on a key's daily token and monthly USD budgets (0: none), through the one take of every budget."""
    lines = [Line(DAILY_TOKENS, "", daily_tokens or float("inf")), Line(MONTHLY_USD, "", monthly_usd or float("inf"))]
    hold, counted = await holds.take(name, tokens, usd, lines, list(spent), today)
    return hold, Spending(int(counted[0]), float(counted[1]))


async def key_k(db: Database) -> None:
    """The key "k" (the spend of a key that does not exist is not kept)."""
    await db.amigrate(COMPONENT, PG_STEPS)
    await db.fetch("INSERT INTO client_keys (name, digest, created, changed) VALUES ('k', '00', 0, 0) RETURNING name")


@pytest.fixture(autouse=True)
async def _pools_closed():
    yield
    await close_pools()


async def test_in_memory_running_requests_count_until_released():
    holds = MemoryHolds()
    first, counted = await take(holds, "k", 60, 0.0, 100, 0.0, NONE, TODAY)
    assert first is not None and counted == NONE
    second, counted = await take(holds, "k", 60, 0.0, 100, 0.0, NONE, TODAY)
    assert second is not None and counted == Spending(60, 0.0)  # below the budget: it runs (and passes it)
    third, counted = await take(holds, "k", 60, 0.0, 100, 0.0, NONE, TODAY)
    assert third is None and counted == Spending(120, 0.0)
    holds.release(first)
    holds.release(second)
    assert (await take(holds, "k", 60, 0.0, 100, 0.0, Spending(99, 0.0), TODAY))[0] is not None
    assert (await take(holds, "k", 1, 0.5, 0, 1.0, Spending(0, 1.0), TODAY))[0] is None  # a USD budget alike


async def test_a_key_of_unknown_cost_runs_one_request_at_a_time_until_one_finished():
    costs = Costs()
    (first, probe) = await costs.expected("k", 10)
    assert first == (10, 0.0) and probe
    waiting = asyncio.ensure_future(costs.expected("k", 12))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # behind the probe
    costs.learn("k", 500, 0.25)
    costs.probed("k")
    assert await asyncio.wait_for(waiting, 1) == ((500, 0.25), False)
    assert await costs.expected("k", 900) == ((900, 0.25), False)  # the prompt alone is more: it is held


async def test_a_request_that_bounds_its_own_tokens_holds_that_bound_and_never_waits():
    """A token budget alone, and a request whose output cap is known (its max_tokens): prompt + cap is all it can
    cost, held at once — no probe, nothing waits behind it (Claude Code's first requests run side by side)."""
    costs = Costs()
    assert await costs.expected("k", 10, ceiling=10 + 32_000) == ((32_010, 0.0), False)
    assert await asyncio.wait_for(costs.expected("k", 12, ceiling=12 + 100), 1) == ((112, 0.0), False)
    assert (await costs.expected("k", 10))[1]  # without a bound the first is still the probe
    costs.learn("k", 500, 0.0)
    costs.probed("k")
    assert await costs.expected("k", 10, ceiling=10 + 100) == ((110, 0.0), False)  # its own bound, below the largest


async def test_a_probe_that_learned_nothing_lets_the_next_request_probe():
    costs = Costs()
    assert (await costs.expected("k", 10))[1]
    waiting = asyncio.ensure_future(costs.expected("k", 10))
    await asyncio.sleep(0.01)
    costs.probed("k")  # failed: no cost
    assert (await asyncio.wait_for(waiting, 1))[1]


async def test_two_gateways_holding_at_once_admit_exactly_what_the_budget_allows(pg_url):
    dbs = [Database(pg_url, max_size=8), Database(pg_url, max_size=8)]
    try:
        await key_k(dbs[0])
        holds = [SharedHolds(db) for db in dbs]
        got = await asyncio.gather(*(take(holds[i % 2], "k", 10, 0.0, 50, 0.0, NONE, TODAY) for i in range(30)))
        made = [h for h, _ in got if h is not None]
        assert len(made) == 5
        assert all(counted.tokens_today == 50 for h, counted in got if h is None)
        # a request's spend and the end of its hold, in one transaction: counted once
        holds[0].release(made[0])
        await SharedKeys(dbs[0]).write_spend({("k", TODAY): Delta(requests=1, tokens=7)}, *holds[0].take_released())
        assert (await take(holds[1], "k", 10, 0.0, 50, 0.0, NONE, TODAY))[0] is not None  # 7 + 40 < 50
        assert (await take(holds[1], "k", 10, 0.0, 50, 0.0, NONE, TODAY))[1].tokens_today == 57
    finally:
        for db in dbs:
            await db.aclose()


async def test_counts_beyond_32_bits_are_kept_and_held(pg_url):
    db = Database(pg_url, max_size=4)
    try:
        await key_k(db)
        big = 3 * 2**31  # above any 32-bit column
        keys = SharedKeys(db)
        await keys.write_spend({("k", TODAY): Delta(requests=1, tokens=big, plan_tokens=big)})
        await keys.write_spend({("k", TODAY): Delta(requests=1, tokens=big)})
        spent = (await keys.spend(TODAY))["k"]
        assert spent.tokens_today == 2 * big and spent.plan_tokens_month == big
        hold, counted = await take(SharedHolds(db), "k", big, 0.0, 4 * big, 0.0, NONE, TODAY)
        assert hold is not None and counted.tokens_today == 2 * big
        assert (await take(SharedHolds(db), "k", 1, 0.0, 4 * big, 0.0, NONE, TODAY))[1].tokens_today == 3 * big
        types = await db.fetch("SELECT table_name, column_name, data_type FROM information_schema.columns WHERE "
                               "table_name IN ('client_keys', 'key_day', 'key_grants', 'key_holds') AND data_type "
                               "LIKE '%%int%%'")
        assert types and {t for _, _, t in types} == {"bigint"}, types
    finally:
        await db.aclose()
