"""Work on a batch file's lines off the event loop, a bounded piece at a time: an upload of Model Studio's
50,000 lines took the loop for 1.6 s (four at once 3.2 to 4.6 s), and every other client waited.

One worker thread does every batch file's work, piece after piece (PIECE lines each, from the uploads and results
files in progress in turn): the work is Python's, which holds the GIL, so more threads would not make it faster,
only make the loop wait longer for the GIL at each wake-up. Between two pieces the loop runs what waits for it."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
PIECE = 500  # lines per piece: a few ms of work (a translated chat line costs tens of µs)

_worker: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _worker
    if _worker is None:
        _worker = ThreadPoolExecutor(1, thread_name_prefix="qwen-batch-lines")
    return _worker


async def off_loop(fn: Callable[..., T], *args) -> T:
    """`fn(*args)` in the batch files' worker thread."""
    return await asyncio.get_running_loop().run_in_executor(_executor(), functools.partial(fn, *args))


def pieces(rows: list[str]) -> Iterator[tuple[int, list[str]]]:
    """The rows a piece at a time, each with the line number of its first row (1-based)."""
    for start in range(0, len(rows), PIECE):
        yield start + 1, rows[start:start + PIECE]
