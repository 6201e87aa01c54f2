"""A Responses WebSocket's lanes (socket.py): the spec's `stream_id` — turns with the same one run one after
another in the order sent, each lane beside the others; a `response.create` without one is on the default
lane. A lane lives while it has turns to run."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

QUEUED = 8  # messages read ahead of a lane's turn running; then the client's bytes wait (TCP's own backpressure)
MAX_LANES = 8  # lanes (the default lane counted) running at once on one connection: each one a Qwen stream


class Lanes:
    """A connection's lanes: each `stream_id` (None: the default lane) its queue and its worker, which runs the
    lane's turns one after another in the order sent (`run`, then `drain`) and ends when its queue is empty;
    lanes run beside each other, at most MAX_LANES at once. `rest` is called whenever the last lane ends."""

    def __init__(self, run: Callable[[object, int, str | None], Awaitable[None]],
                 drain: Callable[[], Awaitable[None]], rest: Callable[[], None]) -> None:
        self.run, self.drain, self.rest = run, drain, rest
        self.queues: dict[str | None, asyncio.Queue[tuple[object, int, Callable[[], None]]]] = {}
        self.workers: dict[str | None, asyncio.Future] = {}

    async def put(self, lane: str | None, message: object, size: int, done: Callable[[], None]) -> bool:
        """Queued on `lane` (waiting while QUEUED are ahead), `done` called once its turn has run; False when it
        would be a lane too many."""
        queue = self.queues.get(lane)
        if queue is None:
            if len(self.queues) >= MAX_LANES:
                return False
            queue = self.queues[lane] = asyncio.Queue(QUEUED)
            self.workers[lane] = asyncio.ensure_future(self._work(lane, queue))
        await queue.put((message, size, done))
        return True

    async def _work(self, lane: str | None, queue: asyncio.Queue[tuple[object, int, Callable[[], None]]]) -> None:
        try:
            while True:
                message, size, done = await queue.get()
                try:
                    await self.run(message, size, lane)
                finally:
                    done()
                await self.drain()
                if queue.empty():  # no await from here to the lane's end: a message read later opens it again
                    return
        finally:
            if self.queues.get(lane) is queue:
                del self.queues[lane], self.workers[lane]
                if not self.queues:
                    self.rest()

    async def close(self) -> None:
        """The connection ended: every lane's turn cancelled, and waited for."""
        self.rest = lambda: None  # the connection's idle deadline is gone with it
        workers = list(self.workers.values())
        for worker in workers:
            worker.cancel()
        for worker in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
