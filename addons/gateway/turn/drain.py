"""The graceful drain (docs/deploy.md#a-graceful-drain): a SIGTERM stops the gateway without cutting what runs,
and without a request ever accepted and then left without an answer.

    begin   one line; readiness turns 503 (`draining`: the orchestrator sends traffic elsewhere); a new turn is
            refused 503 with Retry-After, in the client's format, its connection closed
    wait    until no exchange runs — HTTP answers and streams, WebSocket turns, background responses — and no
            request has come for QUIET_S, at most qwen_drain_s
            from the signal on, every HTTP/1 answer says `Connection: close`: a kept-alive connection closes
            between two requests, never under one
    close   the entrance closed (ingress/listeners.py): the kernel takes no new connection (its client sent nothing,
            and tries elsewhere); the connections accepted before are answered — a request on its way 503
    stop    one line, then mitmproxy's own shutdown: the addon's `done` ends what still runs with the client's
            error (turn/stopping.py), writes the ledger's and the stores' last batches, and the process exits 0

A second SIGTERM stops at once (SIGINT always did: mitmproxy's handler). Why the listener stays open rather than
closing at the first SIGTERM: readiness must answer 503 while the drain runs (kubelet asks it), and a client on
a kept-alive connection would otherwise meet a reset instead of an answer it can act on; the 503 closes its
connection, so its retry goes through the load balancer to a replica that is ready. Why the entrance closes before
the stop: mitmproxy's shutdown leaves the listener open until the process ends, and a connection it accepted
meanwhile was cut with no answer (the issue: 0.02–0.2 s after a SIGTERM on an idle gateway, an empty reply).
SIGTERM reaches the drain through seams/shutdown_signals.py (it replaces mitmproxy's handler).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from mitmproxy.utils import asyncio_utils

from ..exchange import Exchange
from ..health_probes import Probes
from .stopping import Stopping

log = logging.getLogger("qwen")

POLL_S = 0.05  # how often the drain looks whether anything still runs (only while it drains)
QUIET_S = 0.25  # the listener stays open until no request has come for this long: one on its way is answered 503
FIRST_HEAD_S = 2.0  # once the listener is closed, how long a connection it accepted may take to send its request
REFUSED = ("The gateway is shutting down and takes no new requests; send the request again (another replica, or "
           "this gateway once it is back, answers it).")


class ClientConnections(Protocol):
    """What the drain knows of the client connections (ingress/deadlines.py)."""

    last_head: float  # when the last request head arrived (time.monotonic)

    def answers_owed(self, since: float) -> int: ...  # connections accepted and not yet answered (ingress/deadlines.py)


class Drain:
    def __init__(self, *, in_progress: Callable[[], int], connections: ClientConnections | None = None,
                 close_listeners: Callable[[], Awaitable[None]] | None = None) -> None:
        self.in_progress = in_progress  # exchanges running now
        self.connections = connections
        self.close_listeners = close_listeners  # no new connection taken (ingress/listeners.stop_listening)
        self.probes: Probes | None = None  # readiness: told when the drain begins
        self.shutdown: Callable[[], None] | None = None  # mitmproxy's (Master.shutdown), set when signals are ours
        self.draining = False
        self._task: asyncio.Task | None = None
        self._running = False  # the gateway started (mitmproxy's `running`): a drain's wait may end in the stop
        self._pending: float | None = None  # qwen_drain_s of a SIGTERM that came while it started

    async def check(self, ex: Exchange) -> None:
        """A check before upstream (turn/runner.py): no new turn once the drain began."""
        if self.draining:
            raise Stopping(REFUSED)

    def refuse_new(self) -> None:
        """The entrance's check, for what is not a turn yet (a WebSocket upgrade)."""
        if self.draining:
            raise Stopping(REFUSED)

    def closing(self, flow) -> None:
        """While it drains, an HTTP/1 answer closes its connection after it (`Connection: close`): a client or a
        balancer sends its next request elsewhere, never on a connection the stop would cut under it. Called at
        responseheaders and response: a stream whose head went out before the signal has it set at its end, and
        mitmproxy, which reads the header after the last byte, closes the connection all the same."""
        answer = flow.response
        if self.draining and answer is not None and answer.status_code != 101 and flow.websocket is None \
                and flow.request.http_version.startswith("HTTP/1"):
            answer.headers["connection"] = "close"

    def signalled(self, seconds: float) -> None:
        """SIGTERM: the drain begins; a second one stops the gateway now."""
        if self.draining:
            log.info("qwen: a second SIGTERM: stopping now (what still runs ends with an error)")
            self._stop()
            return
        self.draining = True
        if self.probes is not None:
            self.probes.draining = True
        if not self._running:  # the stop waits for the start: its `done` must run, and its listeners be known
            self._pending = seconds
            log.info("qwen: SIGTERM during start-up: draining once the gateway has started; new requests are "
                     "answered 503, readiness is 503")
            return
        running = self.in_progress()
        what = f"{_requests(running)} in progress may finish within {seconds:g} s (qwen_drain_s)" if running \
            else "nothing in progress"
        log.info(f"qwen: SIGTERM: draining: {what}; new requests are answered 503, readiness is 503")
        self._task = asyncio_utils.create_task(self._wait(seconds), name="qwen: drain", keep_ref=True)

    def started(self) -> None:
        """The gateway started: a drain begun while it started waits from now on."""
        self._running = True
        seconds, self._pending = self._pending, None
        if seconds is not None:
            self._task = asyncio_utils.create_task(self._wait(seconds), name="qwen: drain", keep_ref=True)

    async def _wait(self, seconds: float) -> None:
        began = time.monotonic()
        deadline = began + seconds
        # (an exchange's end and a quiet entrance have no event of their own to wait for)
        await _until(lambda: time.monotonic() >= deadline or not (self.in_progress() or self._recent(began)), seconds)
        if self.close_listeners is not None:
            await self.close_listeners()
        # what the listeners accepted before the entrance closed: its request comes, and is answered (past the
        # deadline too: a turn still running is then ended with its error, a new one refused, never cut)
        first_heads = time.monotonic() + FIRST_HEAD_S
        await _until(lambda: not (self._owed(began, first_heads) or (self.in_progress() and time.monotonic() < deadline)),
                     max(FIRST_HEAD_S, deadline - time.monotonic()))
        left = self.in_progress()
        if left:
            log.warning(f"qwen: drain: qwen_drain_s ({seconds:g} s) is over with {_requests(left)} still in "
                        "progress: they end now with an error")
        else:
            log.info("qwen: drain: nothing in progress; stopping")
        self._stop()

    def _recent(self, began: float) -> bool:
        """A request came (or the signal did) within QUIET_S: more may be on their way."""
        last = max(began, self.connections.last_head if self.connections is not None else began)
        return time.monotonic() - last < QUIET_S

    def _owed(self, since: float, until: float) -> bool:
        """A connection accepted before the entrance closed has still to send its request, or to read the answer
        to one sent since the signal (until `until`)."""
        return self.connections is not None and time.monotonic() < until and self.connections.answers_owed(since) > 0

    def _stop(self) -> None:
        if self.shutdown is not None:
            self.shutdown()

    def cancel(self) -> None:
        """The gateway stops (for any reason): the drain's wait ends with it."""
        if self._task is not None and not self._task.done():
            self._task.cancel()


async def _until(done: Callable[[], bool], limit_s: float) -> None:
    """Polls `done` every POLL_S, for `limit_s` at most (each condition also ends by its own deadline)."""
    for _ in range(math.ceil(max(limit_s, 0) / POLL_S) + 1):
        if done():
            return
        await asyncio.sleep(POLL_S)


def _requests(n: int) -> str:
    return "1 request" if n == 1 else f"{n} requests"
