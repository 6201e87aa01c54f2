"""The shared rate grants (tenancy/team_pg.py) on a real PostgreSQL: two gateways' limiters (each its own
Database and pool, as on two machines) taking from one key at once stay within its limit exactly; large
limits are leased in chunks (few round trips); what a lease did not spend is given back."""

from __future__ import annotations

import asyncio

import pytest

from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from qwen_gateway.tenancy.store import COMPONENT, PG_STEPS
from qwen_gateway.tenancy.limits import RPM, TPM, Limiter, Taken
from qwen_gateway.tenancy.team_pg import SharedGrants
from qwen_gateway.storage.pg import Database
from qwen_gateway.storage.pg_tasks import close_pools


@pytest.fixture(autouse=True)
async def _pools_closed():
    """Every pool a test opened, closed in its event loop: psycopg_pool's workers would keep the loop's end
    waiting (storage/pg_tasks.py)."""
    yield
    await close_pools()


class Counted(SharedGrants):
    calls = 0

    async def take(self, *args):
        self.calls += 1
        return await super().take(*args)


async def _used(db: Database, name: str, kind: str) -> int:
    rows = await db.fetch("SELECT COALESCE(SUM(amount), 0) FROM key_grants WHERE name = %s AND kind = %s", (name, kind))
    return int(rows[0][0])


async def test_two_gateways_taking_at_once_stay_exactly_within_the_limit(pg_url):
    dbs = [Database(pg_url, max_size=8), Database(pg_url, max_size=8)]
    try:
        await dbs[0].amigrate(COMPONENT, PG_STEPS)
        limiters = [Limiter(SharedGrants(db)) for db in dbs]
        got = await asyncio.gather(*(limiters[i % 2].take("k", RPM, 1, 5) for i in range(40)))
        assert sum(isinstance(g, Taken) for g in got) == 5
        assert all(55 <= g <= 62 for g in got if not isinstance(g, Taken))  # when the oldest grant leaves
        assert await _used(dbs[0], "k", RPM) == 5
        for limiter in limiters:  # what each heard last from the database: the window full, empty within 62 s
            left, reset = limiter.state("k", RPM, 5)
            assert left == 0 and 0 < reset <= 62
    finally:
        for db in dbs:
            await db.aclose()


async def test_large_limits_are_leased_in_chunks_and_unspent_allowance_is_given_back(pg_url):
    """…and while a lease runs, a tpm settlement comes out of (or back into) the lease: no write per request."""
    db = Database(pg_url, max_size=4)
    try:
        grants = Counted(db)
        limiter = Limiter(grants)
        got = await asyncio.gather(*(limiter.take("big", RPM, 1, 6000) for _ in range(250)))
        assert all(isinstance(g, Taken) for g in got)
        assert grants.calls == 3  # 100 a round trip (6000 / 60)
        assert await _used(db, "big", RPM) == 300  # taken, leased: 50 not spent yet
        limiter._leases[("big", RPM)].until = 0
        limiter.sweep()
        await grants.flush()  # give-backs and settlements are written every second
        assert await _used(db, "big", RPM) == 250
        # tpm: the estimate reserved, then what Qwen reported
        taken = await Limiter(grants).take("t", TPM, 100, 1000)
        assert isinstance(taken, Taken)
        Limiter(grants).settle(taken, 700)
        await grants.flush()
        assert await _used(db, "t", TPM) == 700
        assert await Limiter(grants).take("t", TPM, 400, 1000) > 0  # refused: 700 + 400 > 1000
        leased = Limiter(grants)
        first = await leased.take("tl", TPM, 10, 600_000)  # a lease of 10,000 tokens
        assert isinstance(first, Taken)
        leased.settle(first, 25)
        assert grants._deltas == {} and leased._leases[("tl", TPM)].remaining == 10_000 - 25
    finally:
        await db.aclose()
