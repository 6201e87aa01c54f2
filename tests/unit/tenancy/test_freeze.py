"""A frozen event loop (tenancy/freeze.py): once it ran again, the keys are read again — once, for every request
waiting — before a named key is decided; a loop that keeps running reads nothing more."""

from __future__ import annotations

import asyncio
import time

from qwen_gateway.tenancy.freeze import GAP_S, WATCH_S, LoopWatch


def test_a_loop_frozen_past_the_gap_reads_the_keys_again_once_before_deciding():
    async def main() -> tuple[bool, bool, int, bool, int]:
        reads = []

        async def read() -> None:
            await asyncio.sleep(0.05)
            reads.append(1)

        watch = LoopWatch(read)
        task = asyncio.get_running_loop().create_task(watch.watch())
        await asyncio.sleep(WATCH_S * 3)
        before = watch.stale()
        time.sleep(GAP_S + 0.5)  # the loop frozen (what SIGSTOP does to it)
        frozen = watch.stale()
        await asyncio.gather(*(watch.fresh() for _ in range(5)))  # five requests waiting: one read
        after = watch.stale()
        await asyncio.sleep(WATCH_S * 3)
        await watch.fresh()  # nothing stale: no read
        task.cancel()
        return before, frozen, len(reads), after, len(reads)

    before, frozen, reads, after, later = asyncio.run(main())
    assert (before, frozen, reads, after, later) == (False, True, 1, False, 1)


def test_a_watch_not_running_is_never_stale():
    watch = LoopWatch(lambda: asyncio.sleep(0))
    time.sleep(GAP_S + 0.1)
    assert watch.stale() is False
