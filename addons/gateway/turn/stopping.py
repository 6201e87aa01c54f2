"""Turns a stopping gateway ends early, each with the client's error rather than a cut connection: at the end of
the graceful drain (qwen_drain_s, turn/drain.py), at a second SIGTERM, or at any other stop (SIGINT, mitmproxy's
shutdown). A turn waiting for Qwen's answer or pumping its stream runs inside `running()`; `cut()` cancels those
tasks, and the cancellation comes out of `running()` as `Stopping`, a 503: the relay writes it whole (or the pump
sends it as the stream's error event), a WebSocket turn sends its `error` event, a background run fails with it.
"""

from __future__ import annotations

import asyncio

from ..errors import GatewayError

RETRY_AFTER_S = 5  # what a client refused or cut short by a stopping gateway is asked to wait


class Stopping(GatewayError):
    """The answer of a gateway that is stopping: 503, Retry-After, and its connection closed (a client that
    tries again opens a new one, which a load balancer sends to another replica)."""

    def __init__(self, message: str) -> None:
        super().__init__(503, message, type="server_error", code="gateway_shutting_down",
                         headers={"retry-after": str(RETRY_AFTER_S), "connection": "close"})


CUT = ("The gateway is shutting down and ended this answer before it was complete; send the request again "
       "(another replica, or this gateway once it is back, answers it).")


class Interruptible:
    def __init__(self) -> None:
        self._running: set[asyncio.Task] = set()
        self._cut: set[asyncio.Task] = set()

    def running(self) -> Running:
        """The current task may be cut while inside: it then raises `Stopping(CUT)`."""
        return Running(self._running, self._cut)

    def cut(self) -> int:
        """End every turn inside `running()` now; how many."""
        todo = [t for t in self._running if t not in self._cut and not t.done()]
        for task in todo:
            self._cut.add(task)
            task.cancel()
        return len(todo)


class Running:
    """`Interruptible.running()`: a class, not a generator context manager (a generator, its wrapper and their calls for
    every turn)."""

    __slots__ = ("running", "cut", "task")

    def __init__(self, running: set[asyncio.Task], cut: set[asyncio.Task]) -> None:
        self.running, self.cut = running, cut
        self.task: asyncio.Task | None = None

    def __enter__(self) -> None:
        self.task = asyncio.current_task()
        if self.task is not None:
            self.running.add(self.task)

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None, tb: object) -> None:
        task = self.task
        if task is None:
            return
        self.running.discard(task)
        was_cut = task in self.cut
        self.cut.discard(task)
        if was_cut and kind is not None and issubclass(kind, asyncio.CancelledError):
            task.uncancel()
            raise Stopping(CUT) from None
