"""Background runs: a request answered at once (a Responses POST with `"background": true` is answered with its
`queued` Response) whose turn runs on in the gateway — its own exchange, on the POST's flow, through the same
engine, stream translation, pool and kept answer as a streamed POST (like a WebSocket turn, socket_turns.py) —
while readers look at where it is, read its events or cancel it.

What a run's events are and what it answers as it stands is its dialect's record (`RunRecord`: the Responses
API's is api/responses/background.py, which starts each run); the runner here holds the runs (the last
`KEEP_RUNS` finished ones too, for a later reader), runs each by the gateway's turn (`runner`, turn/runner.py)
as a task, cancels one when asked, and ends each once (`BackgroundRun.ended`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import GatewayError
from ..exchange import Exchange
from . import Cancelled, TurnRunner, outcome

if TYPE_CHECKING:
    from mitmproxy import http

    from ..interfaces import StreamTranslator

log = logging.getLogger("qwen")

KEEP_RUNS = 64  # finished runs whose events are kept for a later stream


class RunRecord(Protocol):
    """A dialect's record of one background run: its stream translator records each event as it is made."""

    @property
    def translator(self) -> StreamTranslator: ...

    def response(self, ended: bool) -> dict[str, Any]:
        """The answer as it stands (`ended`: the run is over)."""
        ...

    def since(self, starting_after: int) -> bytes:
        """The encoded events after sequence number `starting_after`."""
        ...

    def fail(self, error: dict) -> None:
        """The run failed with `error` (message, code, type): its failure event."""
        ...

    def cancel(self) -> None:
        """The run was cancelled: its stream ends so (once)."""
        ...


@dataclasses.dataclass(eq=False)
class Run:
    """One background run: its exchange, its dialect's record, its task and state."""

    ex: Exchange
    record: RunRecord
    task: asyncio.Task | None = None
    done: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    cancelled: bool = False

    def response(self) -> dict[str, Any]:
        return self.record.response(self.done.is_set())

    def since(self, starting_after: int) -> bytes:
        return self.record.since(starting_after)


class BackgroundRuns:
    def __init__(self, runner: TurnRunner) -> None:
        self.runner = runner
        self.runs: OrderedDict[str, Run] = OrderedDict()

    def get(self, run_id: str, owner: str) -> Run | None:
        """The run of `owner`'s request (another key's run is none of its business)."""
        run = self.runs.get(run_id)
        return run if run is not None and run.ex.key.name == owner else None

    def start(self, ex: Exchange, turn: Exchange, run_id: str, record: RunRecord) -> Run:
        """`turn` (a fork of the answered `ex`, translated and checked by it) run on as `run_id`, on `ex`'s flow."""
        outcome.translated_already(turn)  # the POST's turn translated and checked it
        run = Run(turn, record)
        self.runs[run_id] = run
        self._evict()
        run.task = asyncio.get_running_loop().create_task(self._run(run, self.runner.flow_of(ex)),
                                                          name=f"qwen: background {run_id}")
        ex.notes.append("background: answered queued, the turn runs on")
        outcome.handed_on(ex)
        return run

    def _evict(self) -> None:
        finished = [rid for rid, r in self.runs.items() if r.done.is_set()]
        for rid in finished[:max(0, len(self.runs) - KEEP_RUNS)]:
            del self.runs[rid]

    async def cancel(self, run: Run) -> dict[str, Any]:
        """Stop a run; its answer (status `cancelled`, or how it ended if it had)."""
        if run.task is not None and not run.done.is_set():
            run.cancelled = True
            run.task.cancel()
            await run.done.wait()
        return run.response()

    def stop(self) -> None:
        for run in self.runs.values():
            if run.task is not None:
                run.task.cancel()

    # ---- the turn ----------------------------------------------------------------------------------------

    async def _run(self, run: Run, flow: http.HTTPFlow | None) -> None:
        if flow is not None:
            self.runner.follow(run.ex, flow)
        try:
            await self.runner.run(run.ex, BackgroundRun(run))
        except asyncio.CancelledError:
            if not run.cancelled:  # the gateway is shutting down
                raise


class BackgroundRun:
    """A background run's transport (turn.Transport): its events recorded for later readers (by its record's
    translator), a refusal its failure event, its final answer kept by the endpoint at its end whatever the
    outcome."""

    capture = 0
    keeps = True
    ends_record = True
    client = None

    def __init__(self, run: Run) -> None:
        self.run = run

    def translator(self, ex: Exchange) -> StreamTranslator:
        return self.run.record.translator

    async def begin(self, ex: Exchange) -> None:
        pass

    async def send(self, outs: list[bytes]) -> None:
        pass  # recorded by the translator as they were made

    async def whole(self, ex: Exchange, answer: http.Response) -> bool:
        return False  # a background run records a stream's events: the turn ends it (refuse, below)

    async def refuse(self, ex: Exchange, err: GatewayError) -> bool:
        self.run.record.fail({"message": err.message, "code": err.code, "type": err.type})
        return False

    def cancelled(self, ex: Exchange) -> Cancelled:
        self.run.record.cancel()
        return Cancelled(False, "cancelled (POST /v1/responses/{id}/cancel)")

    def ended(self, ex: Exchange, final: dict | None) -> None:
        run = self.run
        try:
            if ex.endpoint is not None and ex.endpoint.finished is not None:
                ex.endpoint.finished(ex, run.response())
        except Exception:
            log.exception("qwen: could not store a background response")
        finally:
            run.done.set()
