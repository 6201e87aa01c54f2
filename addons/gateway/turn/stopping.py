"""Turns the gateway ends early, each with the client's error rather than a cut connection: every turn of a stopping
gateway — at the end of the graceful drain (qwen_drain_s, turn/drain.py), at a second SIGTERM, or at any other stop
(SIGINT, mitmproxy's shutdown) — and the turns of a named key revoked, rotated or deleted while they run
(qwen_key_change_in_flight). A turn waiting for Qwen's answer or pumping its stream runs inside `running(key)`;
`cut()` cancels those tasks (all, or one key's), and the cancellation comes out of `running()` as the `Ended` it was
cut with: the relay writes it whole (or the pump sends it as the stream's error event), a WebSocket turn sends its
`error` event, a background run fails with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..errors import Ended

RETRY_AFTER_S = 5  # what a client refused or cut short by a stopping gateway is asked to wait


class Stopping(Ended):
    """The answer of a gateway that is stopping: 503, Retry-After, and its connection closed (a client that
    tries again opens a new one, which a load balancer sends to another replica)."""

    def __init__(self, message: str) -> None:
        super().__init__(503, message, type="server_error", code="gateway_shutting_down",
                         headers={"retry-after": str(RETRY_AFTER_S), "connection": "close"})


CUT = ("The gateway is shutting down and ended this answer before it was complete; send the request again "
       "(another replica, or this gateway once it is back, answers it).")


class Interruptible:
    def __init__(self) -> None:
        self._running: dict[asyncio.Task, str] = {}  # task -> its named key ("" none)
        self._cut: dict[asyncio.Task, Callable[[], Ended]] = {}  # task -> what it ends with

    def running(self, key: str = "") -> Running:
        """The current task may be cut while inside: it then raises the `Ended` it was cut with."""
        return Running(self._running, self._cut, key)

    def cut(self, key: str | None = None, why: Callable[[], Ended] = lambda: Stopping(CUT)) -> int:
        """End every turn inside `running()` now (`key`: only that named key's), each with an error `why` makes
        (a stopping gateway's 503 unless told); how many."""
        todo = [t for t, k in self._running.items() if (key is None or k == key) and t not in self._cut
                and not t.done()]
        for task in todo:
            self._cut[task] = why
            task.cancel()
        return len(todo)


class Running:
    """`Interruptible.running()`: a class, not a generator context manager (a generator, its wrapper and their calls for
    every turn)."""

    __slots__ = ("running", "cut", "task", "key")

    def __init__(self, running: dict[asyncio.Task, str], cut: dict[asyncio.Task, Callable[[], Ended]],
                 key: str) -> None:
        self.running, self.cut, self.key = running, cut, key
        self.task: asyncio.Task | None = None

    def __enter__(self) -> None:
        self.task = asyncio.current_task()
        if self.task is not None:
            self.running[self.task] = self.key

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None, tb: object) -> None:
        task = self.task
        if task is None:
            return
        self.running.pop(task, None)
        why = self.cut.pop(task, None)
        if why is not None and kind is not None and issubclass(kind, asyncio.CancelledError):
            task.uncancel()
            raise why() from None
