"""What a shared database leaves running on the event loop (storage/pg_tasks.py), without a database: the
background writes `drain` waits for (bounded), the pools `close_pools` closes, a failed write's error retrieved."""

from __future__ import annotations

import asyncio

from qwen_gateway.storage import pg_tasks


class Pool:
    def __init__(self, hangs: bool = False) -> None:
        self.closed, self.hangs = False, hangs

    async def aclose(self) -> None:
        if self.hangs:
            self.task = asyncio.current_task()
            await asyncio.Event().wait()  # a pool whose workers never stop
        self.closed = True


async def test_drain_waits_for_the_background_writes(monkeypatch):
    done: list[int] = []

    async def write(n: int) -> None:
        await asyncio.sleep(0)
        done.append(n)

    tasks = {asyncio.ensure_future(write(n)) for n in range(3)}
    monkeypatch.setattr(pg_tasks, "_writes", tasks)
    await pg_tasks.drain()
    assert sorted(done) == [0, 1, 2] and all(t.done() for t in tasks)


async def test_drain_gives_up_on_a_write_that_never_ends(monkeypatch):
    stuck = asyncio.ensure_future(asyncio.Event().wait())
    monkeypatch.setattr(pg_tasks, "_writes", {stuck})
    monkeypatch.setattr(pg_tasks, "DRAIN_S", 0.01)
    await pg_tasks.drain()
    assert not stuck.done()  # left running: shutdown goes on
    stuck.cancel()


async def test_close_pools_closes_every_open_pool_and_waits_for_none_for_ever(monkeypatch):
    pools = [Pool(), Pool(), Pool(hangs=True)]
    monkeypatch.setattr(pg_tasks, "_pooled", pg_tasks.weakref.WeakSet(pools))
    monkeypatch.setattr(pg_tasks, "DRAIN_S", 0.05)
    await pg_tasks.close_pools()
    assert [p.closed for p in pools] == [True, True, False]
    pools[2].task.cancel()


async def test_a_failed_background_task_has_its_error_retrieved():
    async def fails() -> None:
        raise ConnectionError("database gone")

    task = asyncio.ensure_future(fails())
    await asyncio.wait({task})
    pg_tasks._ended(task)
    assert task._log_traceback is False  # asyncio will not say "exception was never retrieved"
    cancelled = asyncio.ensure_future(asyncio.sleep(1))
    cancelled.cancel()
    await asyncio.wait({cancelled})
    pg_tasks._ended(cancelled)  # a cancelled task has no error to retrieve: no CancelledError raised
