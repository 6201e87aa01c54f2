"""Calling the observers: each at its named points, each isolated, in a fixed order.

Which methods a class overrides is looked up once; a point with no observer costs nothing. `finished` goes
at once to the observers that must see it before the answer is sent (`at_once`: mitmweb's comment and cap, a
key's spend); to the others — the request line, the ledger row, metrics, the debug log, traces — in batches,
once mitmproxy has handed the answer to the client's connection: every exchange finished within BATCH_S,
told observer by observer. MistakeLines one exchange at a time, each observer's code and data left the CPU's caches
between requests, and the recording cost the gateway ~7 % of its throughput (docs/performance.md). Those
that show the prompt estimate are told after the estimate (a few seconds at most); an exchange whose cache print
a worker thread is making (a long prompt: cache/diagnosis.py) is told to them all once it is made. Reading what
they recorded (`scrape`, `flush`) tells the batch first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from mitmproxy import http
from mitmproxy.utils import asyncio_utils

from .accounts import Pool
from .models.learned import LearnedFacts
from .settings.config import Config
from .exchange import Exchange
from .observer import POINTS, Observer, overrides

log = logging.getLogger("qwen")

ESTIMATE_WAIT_S = 5.0
PRINT_WAIT_S = 30.0  # a print longer in the making is not waited for: the doctor leaves that turn unjudged
BATCH_S = 0.05  # the recording observers are told at most this long after an answer went out
BATCH_MOST = 256  # a batch this large is told on the next turn (a burst's exchanges are not held longer)


def call_safely(fn: Callable, *args) -> None:
    """Observers and bookkeeping never change the flow: a failure is logged and the flow goes on."""
    try:
        fn(*args)
    except Exception:
        log.exception("qwen: %s failed", getattr(fn, "__qualname__", fn))


class Observers:
    def __init__(self, observers: list[Observer]) -> None:
        self.all = observers
        self._index()
        self._batch: list[tuple[Exchange, http.HTTPFlow]] = []  # finished, the recording observers not yet told
        self._batch_due: asyncio.Handle | None = None
        # the metrics observer serves /metrics; the flow cap also counts flows the gateway passes through
        self._exposition: Callable[[Pool | None, LearnedFacts | None], bytes] | None = next(
            (o.exposition for o in observers if callable(getattr(o, "exposition", None))), None)  # type: ignore[attr-defined]
        # finished, their observers (some or all) told once work on another thread is done — the cache print being
        # made, the prompt estimate counting —, by the step that follows it (`_hold`)
        self.held: dict[str, tuple[Exchange, http.HTTPFlow, Callable[[Exchange, http.HTTPFlow], None]]] = {}
        self.track: Callable[[http.HTTPFlow], None] | None = next(
            (o.track for o in observers if callable(getattr(o, "track", None))), None)  # type: ignore[attr-defined]

    def _index(self) -> None:
        """Which method each point calls: the active observers' own (observer.py)."""
        active = [o for o in self.all if getattr(o, "active", True)]
        self._points = {p: [getattr(o, p) for o in active if overrides(o, p)] for p in POINTS}
        ending = [o for o in active if overrides(o, "finished")]
        self._finished_at_once = [o.finished for o in ending if o.at_once]
        self._finished_now = [o.finished for o in ending if not o.at_once and not o.waits_for_estimate]
        self._finished_later = [o.finished for o in ending if not o.at_once and o.waits_for_estimate]

    def configure(self, config: Config) -> None:
        for o in self.all:
            call_safely(o.configure, config)
        self._index()  # an opt-in observer switched on or off

    def running(self) -> None:
        for o in self.all:
            call_safely(o.running)
        self._index()  # an observer that runs at once only where it is shown (the cache doctor) knows it now

    def done(self) -> None:
        # exchanges not yet told, or still waiting for their prompt estimate, get their line and row now
        self.flush()
        while self.held:  # in the order held; a step may hold its exchange again (a print, then the estimate)
            self._release(next(iter(self.held)))
        for o in self.all:
            call_safely(o.done)

    def scrape(self, pool: Pool | None, learned: LearnedFacts | None = None) -> bytes | None:
        """The metrics' exposition (None without a metrics observer), every exchange finished so far counted."""
        if self._exposition is None:
            return None
        self.flush()
        return self._exposition(pool, learned)

    def notify(self, point: str, ex: Exchange, flow: http.HTTPFlow) -> None:
        for fn in self._points[point]:
            call_safely(fn, ex, flow)

    def finished(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        for fn in self._finished_at_once:
            call_safely(fn, ex, flow)
        if not (self._finished_now or self._finished_later):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a script, a test): now
            self._tell([(ex, flow)])
            return
        self._batch.append((ex, flow))
        if self._batch_due is None:
            self._batch_due = loop.call_later(BATCH_S, self.flush)
        elif len(self._batch) == BATCH_MOST:
            self._batch_due.cancel()
            self._batch_due = loop.call_soon(self.flush)

    def bill(self, ex: Exchange) -> None:
        """A batch's bill, written to the ledger already: told to the observers that count bills (no flow)."""
        for o in self.all:
            if o.counts_bills and getattr(o, "active", True):
                call_safely(o.finished, ex, None)

    def flush(self) -> None:
        """Tell the recording observers of every exchange finished so far (they run after mitmproxy has sent
        the answer: the `response` hook returns before it does)."""
        if self._batch_due is not None:
            self._batch_due.cancel()
            self._batch_due = None
        batch, self._batch = self._batch, []
        if batch:
            self._tell(batch)

    def _tell(self, batch: list[tuple[Exchange, http.HTTPFlow]], printed: bool = False) -> None:
        if not printed and any(ex.cache_print is not None for ex, _ in batch):
            batch = [(ex, flow) for ex, flow in batch if not self._holds(ex, flow)]
        for fn in self._finished_now:  # observer by observer: its code stays in the caches over the batch
            for ex, flow in batch:
                call_safely(fn, ex, flow)
        if not self._finished_later:
            return
        counted = []
        for ex, flow in batch:
            if ex.count.task is not None and not ex.count.task.done():
                self._hold(ex, flow, ex.count.task, ESTIMATE_WAIT_S, self._estimated)
            else:
                counted.append((ex, flow))
        for fn in self._finished_later:
            for ex, flow in counted:
                call_safely(fn, ex, flow)

    def _holds(self, ex: Exchange, flow: http.HTTPFlow) -> bool:
        """Whether `ex` waits for its cache print (a worker thread making it): told once it is made."""
        printing = ex.cache_print
        if printing is None or printing.done():
            return False
        self._hold(ex, flow, printing, PRINT_WAIT_S, self._printed)
        return True

    def _hold(self, ex: Exchange, flow: http.HTTPFlow, work: asyncio.Future, bound: float,
              then: Callable[[Exchange, http.HTTPFlow], None]) -> None:
        """`then(ex, flow)` once `work` is done, `bound` seconds at most (at shutdown, at once: `done`)."""
        self.held[ex.id] = (ex, flow, then)
        asyncio_utils.create_task(self._after(ex.id, work, bound), name="qwen: finished", keep_ref=True)

    async def _after(self, key: str, work: asyncio.Future, bound: float) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(work), bound)
        except Exception:
            pass
        self._release(key)

    def _release(self, key: str) -> None:
        held = self.held.pop(key, None)
        if held is not None:  # not released yet (at shutdown, it was)
            ex, flow, then = held
            then(ex, flow)

    def _printed(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        self._tell([(ex, flow)], printed=True)  # a print not made by now leaves the turn unjudged

    def _estimated(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        """The estimate counted (or given up on): the flow's record made again with it, then the observers that
        show it told."""
        old, meta = flow.metadata.get("qwen"), ex.to_meta()  # now with the estimate, when it came
        kept = old.get("upstream") if isinstance(old, dict) else None
        if isinstance(kept, dict) and "body" in kept and isinstance(meta.get("upstream"), dict):
            meta["upstream"]["body"] = kept["body"]  # what the annotator kept for mitmweb's upstream view
        flow.metadata["qwen"] = meta
        for fn in self._finished_later:
            call_safely(fn, ex, flow)
