"""Calling the observers: each at its named points, each isolated, in a fixed order.

Which methods a class overrides is looked up once; a point with no observer costs nothing. `finished` goes
at once to observers that change the flow (mitmweb's comment and cap); to the others on the next turn of
the event loop, once mitmproxy has handed the answer to the client's connection (the request line, the
ledger row and the metrics are not on the request's path), and to those that show the prompt estimate
after the estimate (a few seconds at most).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from mitmproxy import http
from mitmproxy.utils import asyncio_utils

from .accounts import Pool
from .config import Config
from .exchange import Exchange
from .observer import POINTS, Observer, overrides

log = logging.getLogger("qwen")

ESTIMATE_WAIT_S = 5.0


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
        self._deferred: dict[str, tuple[Exchange, http.HTTPFlow]] = {}  # finished, side observers not yet told
        # the metrics observer serves /metrics; the flow cap also counts flows the gateway passes through
        self.exposition: Callable[[Pool | None], bytes] | None = next(
            (o.exposition for o in observers if callable(getattr(o, "exposition", None))), None)  # type: ignore[attr-defined]
        self._waiting: dict[str, tuple[Exchange, http.HTTPFlow]] = {}  # finished, the estimate still counting
        self.track: Callable[[http.HTTPFlow], None] | None = next(
            (o.track for o in observers if callable(getattr(o, "track", None))), None)  # type: ignore[attr-defined]

    def _index(self) -> None:
        """Which method each point calls: the active observers' own (observer.py)."""
        active = [o for o in self.all if getattr(o, "active", True)]
        self._points = {p: [getattr(o, p) for o in active if overrides(o, p)] for p in POINTS}
        ending = [o for o in active if overrides(o, "finished")]
        self._finished_flow = [o.finished for o in ending if o.changes_flow]
        self._finished_now = [o.finished for o in ending if not o.changes_flow and not o.waits_for_estimate]
        self._finished_later = [o.finished for o in ending if not o.changes_flow and o.waits_for_estimate]

    def configure(self, config: Config) -> None:
        for o in self.all:
            call_safely(o.configure, config)
        self._index()  # an opt-in observer switched on or off

    def running(self) -> None:
        for o in self.all:
            call_safely(o.running)

    def done(self) -> None:
        # exchanges not yet told, or still waiting for their prompt estimate, get their line and row now
        for ex_id in list(self._deferred):
            self._side(ex_id)
        for ex, flow in list(self._waiting.values()):
            self._finish_later(ex, flow)
        for o in self.all:
            call_safely(o.done)

    def notify(self, point: str, ex: Exchange, flow: http.HTTPFlow) -> None:
        for fn in self._points[point]:
            call_safely(fn, ex, flow)

    def finished(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        for fn in self._finished_flow:
            call_safely(fn, ex, flow)
        if not (self._finished_now or self._finished_later):
            return
        self._deferred[ex.id] = (ex, flow)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a script, a test): now
            self._side(ex.id)
            return
        loop.call_soon(self._side, ex.id)

    def _side(self, ex_id: str) -> None:
        """The observers that only record: after mitmproxy has sent the answer (the `response` hook returns
        before it does)."""
        item = self._deferred.pop(ex_id, None)
        if item is None:
            return  # told already (at shutdown)
        ex, flow = item
        for fn in self._finished_now:
            call_safely(fn, ex, flow)
        if not self._finished_later:
            return
        if ex.estimate is not None and not ex.estimate.done():
            self._waiting[ex.id] = (ex, flow)
            asyncio_utils.create_task(self._after_estimate(ex, flow), name="qwen: finished", keep_ref=True)
        else:
            for fn in self._finished_later:
                call_safely(fn, ex, flow)

    async def _after_estimate(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        try:
            if ex.estimate is not None:
                await asyncio.wait_for(asyncio.shield(ex.estimate), ESTIMATE_WAIT_S)
        except Exception:
            pass
        self._finish_later(ex, flow)

    def _finish_later(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        if self._waiting.pop(ex.id, None) is None:
            return  # already told (at shutdown)
        old, meta = flow.metadata.get("qwen"), ex.to_meta()  # now with the estimate, when it came
        kept = old.get("upstream") if isinstance(old, dict) else None
        if isinstance(kept, dict) and "body" in kept and isinstance(meta.get("upstream"), dict):
            meta["upstream"]["body"] = kept["body"]  # what the annotator kept for mitmweb's upstream view
        flow.metadata["qwen"] = meta
        for fn in self._finished_later:
            call_safely(fn, ex, flow)
