"""Test-only mitmproxy script: how long the event loop keeps a timer waiting. A task asks to wake every TICK_S;
each wake-up later than LATE_S is written to $QWEN_TEST_LOOPLAG as `monotonic lateness busy` (seconds): how late
it woke, and how much of that the loop's thread spent running (its CPU time since the last wake-up). Lateness
also counts the process waiting for a CPU (a loaded machine) or for the GIL (worker threads); `busy` is the
loop's own work that kept the timer waiting."""

import asyncio
import os
import time

TICK_S = 0.001
LATE_S = 0.002


class LoopLag:
    def __init__(self) -> None:
        self.task: asyncio.Task | None = None

    def running(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        path = os.environ["QWEN_TEST_LOOPLAG"]
        while True:
            start, cpu = time.monotonic(), time.thread_time()
            await asyncio.sleep(TICK_S)
            late = time.monotonic() - start - TICK_S
            if late > LATE_S:
                with open(path, "a") as f:
                    f.write(f"{start:.6f} {late:.6f} {time.thread_time() - cpu:.6f}\n")

    def done(self) -> None:
        if self.task is not None:
            self.task.cancel()


addons = [LoopLag()]
