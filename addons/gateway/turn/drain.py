"""The graceful drain (docs/deploy.md#a-graceful-drain): a SIGTERM stops the gateway without cutting what runs.

    begin   readiness turns 503 (`draining`: the orchestrator sends traffic elsewhere); a new turn is refused
            503 with Retry-After, in the client's format, its connection closed
    wait    until no exchange runs — HTTP answers and streams, WebSocket turns, background responses — at most
            qwen_drain_s
    stop    mitmproxy's own shutdown: the addon's `done` ends what still runs with the client's error
            (turn/stopping.py), writes the ledger's and the stores' last batches, and the process exits 0

A second SIGTERM stops at once (SIGINT always did: mitmproxy's handler). Why the listener stays open rather than
closing at the first SIGTERM: readiness must answer 503 while the drain runs (kubelet asks it), and a client on
a kept-alive connection would otherwise meet a reset instead of an answer it can act on; the 503 closes its
connection, so its retry goes through the load balancer to a replica that is ready.
SIGTERM reaches the drain through seams/shutdown_signals.py (it replaces mitmproxy's handler).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from mitmproxy.utils import asyncio_utils

from ..exchange import Exchange
from ..health_probes import Probes
from .stopping import Stopping

log = logging.getLogger("qwen")

POLL_S = 0.05  # how often the drain looks whether anything still runs (only while it drains)
REFUSED = ("The gateway is shutting down and takes no new requests; send the request again (another replica, or "
           "this gateway once it is back, answers it).")


class Drain:
    def __init__(self, *, in_progress: Callable[[], int]) -> None:
        self.in_progress = in_progress  # exchanges running now
        self.probes: Probes | None = None  # readiness: told when the drain begins
        self.shutdown: Callable[[], None] | None = None  # mitmproxy's (Master.shutdown), set when signals are ours
        self.draining = False
        self._task: asyncio.Task | None = None

    async def check(self, ex: Exchange) -> None:
        """A check before upstream (turn/runner.py): no new turn once the drain began."""
        if self.draining:
            raise Stopping(REFUSED)

    def refuse_new(self) -> None:
        """The door's check, for what is not a turn yet (a WebSocket upgrade)."""
        if self.draining:
            raise Stopping(REFUSED)

    def signalled(self, seconds: float) -> None:
        """SIGTERM: the drain begins; a second one stops the gateway now."""
        if self.draining:
            log.info("qwen: a second SIGTERM: stopping now (what still runs ends with an error)")
            self._stop()
            return
        self.draining = True
        if self.probes is not None:
            self.probes.draining = True
        running = self.in_progress()
        if not running:  # nothing to wait for: a stop like any other (its one line, `gateway stopped`)
            self._stop()
            return
        log.info(f"qwen: SIGTERM: draining: {_requests(running)} in progress may finish within {seconds:g} s "
                 "(qwen_drain_s); new requests are answered 503, readiness is 503")
        self._task = asyncio_utils.create_task(self._wait(seconds), name="qwen: drain", keep_ref=True)

    async def _wait(self, seconds: float) -> None:
        for _ in range(round(seconds / POLL_S)):  # (an exchange's end has no event of its own to wait for)
            if not self.in_progress():
                break
            await asyncio.sleep(POLL_S)
        left = self.in_progress()
        if left:
            log.warning(f"qwen: drain: qwen_drain_s ({seconds:g} s) is over with {_requests(left)} still in "
                        "progress: they end now with an error")
        else:
            log.info("qwen: drain: nothing in progress; stopping")
        self._stop()

    def _stop(self) -> None:
        if self.shutdown is not None:
            self.shutdown()

    def cancel(self) -> None:
        """The gateway stops (for any reason): the drain's wait ends with it."""
        if self._task is not None and not self._task.done():
            self._task.cancel()


def _requests(n: int) -> str:
    return "1 request" if n == 1 else f"{n} requests"
