"""A live catalogue's background fetch (upstream/catalogue_fetch.py): one at a time, none without a loop."""

from __future__ import annotations

import asyncio

from qwen_gateway.upstream.catalogue_fetch import CatalogueFetch


class Counting(CatalogueFetch):
    def __init__(self) -> None:
        self.fetches = 0
        self.go = asyncio.Event()

    async def refresh(self) -> None:
        self.fetches += 1
        await self.go.wait()


def test_without_an_event_loop_nothing_is_started():
    c = Counting()
    c.refresh_soon()
    assert c.fetches == 0 and c._task is None


async def test_one_fetch_at_a_time_and_the_next_once_it_ended():
    c = Counting()
    c.refresh_soon()
    c.refresh_soon()  # under way: not a second
    await asyncio.sleep(0)
    assert c.fetches == 1
    c.go.set()
    await c._task
    c.refresh_soon()
    await asyncio.sleep(0)
    assert c.fetches == 2
    await c._task
