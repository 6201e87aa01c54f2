"""Pacing per web account (upstream/qwenweb/pacing.py): one slot per interval and account, booked in order."""

from __future__ import annotations

from qwen_gateway.upstream.qwenweb.pacing import Pacer


def test_pacing_books_one_slot_per_interval_and_account():
    now = [100.0]
    pacer = Pacer(3, clock=lambda: now[0])
    assert [pacer.book("a") for _ in range(3)] == [0, 3, 6]  # concurrent requests queue in order
    assert pacer.book("b") == 0  # another account has its own pace
    now[0] = 110.0
    assert pacer.book("a") == 0 and Pacer(0).book("a") == 0


async def test_wait_sleeps_only_for_a_booked_delay():
    now = [0.0]
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    pacer = Pacer(4, clock=lambda: now[0], sleep=sleep)
    await pacer.wait("a")
    await pacer.wait("a")
    now[0] = 2.0
    await pacer.wait("a")
    assert slept == [4, 6]  # the first at once, then its slot 4 s on, then 8 s on (from t=2: 6 s)
