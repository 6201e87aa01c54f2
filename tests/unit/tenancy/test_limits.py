"""A named key's rpm and tpm (tenancy/limits.py): a sliding minute, settled with what Qwen reported,
leases that make round trips to a shared backend rare."""

from __future__ import annotations

import asyncio

import pytest

from qwen_gateway.tenancy.limits import RPM, TPM, Answer, Limiter, MemoryGrants, Taken, shared_chunk


async def test_one_gateway_admits_exactly_the_limit_under_concurrency():
    limiter = Limiter(MemoryGrants())
    got = await asyncio.gather(*(limiter.take("k", RPM, 1, 5) for _ in range(20)))
    taken = [g for g in got if isinstance(g, Taken)]
    assert len(taken) == 5
    assert all(55 <= g <= 60 for g in got if not isinstance(g, Taken))  # seconds until the oldest leaves


def test_the_window_slides_and_settling_changes_what_counts():
    grants = MemoryGrants()
    assert grants.take_now("k", RPM, 1, 2, now=100.0)[0] == 1
    assert grants.take_now("k", RPM, 1, 2, now=130.0)[0] == 1
    refused = grants.take_now("k", RPM, 1, 2, now=150.0)
    assert refused.granted == 0 and refused.retry_after == pytest.approx(10.0)
    assert refused.used == 2 and refused.reset_after == pytest.approx(40.0)  # when the newest leaves
    assert grants.take_now("k", RPM, 1, 2, now=160.5)[0] == 1  # the first left the window
    tpm_id = grants.take_now("k", TPM, 100, 300, now=200.0).grant
    grants.settle("k", TPM, tpm_id, 150)  # Qwen reported 250 tokens, not the 100 reserved
    assert grants.take_now("k", TPM, 60, 300, now=201.0)[0] == 0
    assert grants.take_now("k", TPM, 50, 300, now=201.0)[0] == 50


class CountingGrants(MemoryGrants):
    """A backend with leases (as the shared database's): counts its round trips."""

    lease = 2.0

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.settled: list[int] = []

    def chunk(self, limit: int, want: int) -> int:
        return shared_chunk(limit, want)

    def try_now(self, name, kind, want, limit):
        return None  # it must be asked, as the database is

    async def take(self, name, kind, want, chunk, limit):
        self.calls += 1
        await asyncio.sleep(0)  # a round trip: other requests run meanwhile
        got = self.take_now(name, kind, chunk, limit)
        return got if got.granted else self.take_now(name, kind, want, limit)

    def settle(self, name, kind, grant, delta):
        self.settled.append(delta)
        super().settle(name, kind, grant, delta)


async def test_leases_make_round_trips_rare_for_generous_limits_and_exact_for_small_ones():
    generous = CountingGrants()
    limiter = Limiter(generous)
    got = await asyncio.gather(*(limiter.take("big", RPM, 1, 6000) for _ in range(300)))
    assert all(isinstance(g, Taken) for g in got)
    assert generous.calls == 3  # chunks of 6000/60 = 100: one round trip per 100 requests
    small = CountingGrants()
    limiter = Limiter(small)
    got = await asyncio.gather(*(limiter.take("small", RPM, 1, 5) for _ in range(20)))
    assert sum(isinstance(g, Taken) for g in got) == 5 and small.calls == 20  # chunk 1: every request asks
    limiter = Limiter(generous)
    assert isinstance(await limiter.take("leftover", RPM, 1, 6000), Taken)
    limiter._leases[("leftover", RPM)].until = 0  # the lease expired unspent
    limiter.sweep()
    assert generous.settled == [-99]  # what it did not spend is given back


async def test_the_limiter_says_what_is_left_and_when_the_window_is_empty():
    limiter = Limiter(MemoryGrants())
    assert limiter.state("k", RPM, 3) == (3, 0.0)  # nothing taken: all of it, now
    await limiter.take("k", RPM, 1, 3)
    await limiter.take("k", RPM, 1, 3)
    left, reset = limiter.state("k", RPM, 3)
    assert left == 1 and 59 < reset <= 60
    await limiter.take("k", RPM, 1, 3)
    assert isinstance(await limiter.take("k", RPM, 1, 3), float)  # refused
    assert limiter.state("k", RPM, 3)[0] == 0
    leased = Limiter(CountingGrants())  # a lease: what it still holds is the key's to use
    await leased.take("big", RPM, 1, 6000)
    assert leased.state("big", RPM, 6000)[0] == 6000 - 100 + 99
    assert MemoryGrants().take_now("x", RPM, 1, 1, now=10.0) == Answer(1, 1, 0.0, 1, 60.0)
