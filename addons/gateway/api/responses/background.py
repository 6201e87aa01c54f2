"""Background responses (`"background": true`): the POST is answered at once with the `queued` Response; the
turn runs on in the gateway — its own exchange, on the POST's flow, through the same engine, stream
translation, pool and stored response as a streamed POST (like a WebSocket turn, socket_turns.py) — while
`GET /v1/responses/{id}` shows where it is, `GET …?stream=true&starting_after=N` gives its events and
`POST …/cancel` stops it.

Every event of a run is kept, encoded as it was made, for the last `KEEP_RUNS` runs: a stream retrieved
later replays them. mitmproxy sends an answer the gateway makes itself whole, so a stream retrieved while
the run goes on is answered when the run ends (every event after `starting_after`, the terminal one
included).

A run is driven by the gateway's turn (`runner`, turn/runner.py): the engine's answer opened, pumped through
the run's translator (which records the events), the pool told, the record settled on the POST's flow.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from ...errors import GatewayError
from ...exchange import Exchange
from ...turn import TurnRunner, outcome
from .diagnostics import encoder
from .history import kept_inputs
from .output import response_object
from .state import state
from ...stores.responses import ResponseStore
from .stream import ResponsesStreamTranslator
from .stream_parts import sse_event

if TYPE_CHECKING:
    from mitmproxy import http

log = logging.getLogger("qwen")

KEEP_RUNS = 64  # finished runs whose events are kept for a later stream


def check(body: dict) -> None:
    """What `background: true` needs (OpenAI refuses the same with store false)."""
    if body.get("store") is False:
        raise GatewayError(400, "Background responses must be stored: 'background' needs 'store' to be true.",
                           param="background", code="unsupported_value")
    if body.get("stream") is True:
        raise GatewayError(400, "A background response is answered at once with its id: stream its events with "
                                "GET /v1/responses/{id}?stream=true. 'background' with 'stream: true' is not "
                                "supported.", param="stream", code="unsupported_value")


@dataclasses.dataclass(eq=False)
class Run:
    """One background response: its exchange, its events (SSE-encoded, by sequence number), its state."""

    ex: Exchange
    queued: dict[str, Any]
    translator: ResponsesStreamTranslator
    events: list[bytes] = dataclasses.field(default_factory=list)
    task: asyncio.Task | None = None
    done: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    cancelled: bool = False

    diagnostics: dict | None = None  # the Response's prompt_cache_diagnostics, as its last event carried them

    def record(self, event: dict) -> bytes:
        data = sse_event(event)  # encoded now: the items an event carries change as the run goes on
        self.events.append(data)
        said = event["response"].get("prompt_cache_diagnostics") if isinstance(event.get("response"), dict) else None
        if said is not None:
            self.diagnostics = said
        return data

    def response(self) -> dict[str, Any]:
        """The Response as it stands: queued until the engine has Qwen's answer."""
        if not self.translator.seq and not self.done.is_set():
            return self.queued
        out = self.translator.response()
        if self.diagnostics is not None:
            out["prompt_cache_diagnostics"] = self.diagnostics
        return out

    def since(self, starting_after: int) -> bytes:
        return b"".join(self.events[starting_after + 1:])


class BackgroundRuns:
    def __init__(self, runner: TurnRunner, store: Callable[[], ResponseStore]) -> None:
        self.runner = runner
        self.store = store
        self.runs: OrderedDict[str, Run] = OrderedDict()

    def get(self, response_id: str, owner: str) -> Run | None:
        """The run of `owner`'s response (another key's run is none of its business)."""
        run = self.runs.get(response_id)
        return run if run is not None and run.ex.key.name == owner else None

    async def start(self, ex: Exchange) -> dict[str, Any]:
        """Queue the POST's turn once the queued Response is stored; the queued Response is the POST's answer."""
        body = ex.body or {}
        own = state(ex)
        rid = own.response_id
        queued = cast(dict[str, Any], response_object(body, response_id=rid, created_at=ex.created, status="queued",
                                                      output=[]))
        run_state = dataclasses.replace(own)
        turn = ex.fork(stream=True, chat_body={**ex.chat_body, "stream": True}, notes=[*ex.notes, "background"],
                       endpoint_state=run_state)  # kept at its end, not before (keep_before_end)
        outcome.translated_already(turn)  # the POST's turn translated and checked it
        if ex.cache_ask is not None:  # the run's prefix goes upstream: it is the one compared, and kept under rid
            turn.cache_ask = dataclasses.replace(ex.cache_ask, seen=None, comparison=None)
            run_state.diagnose = own.diagnose.forked(turn) if own.diagnose is not None else None
        store = self.store()
        run = Run(turn, queued, translator=ResponsesStreamTranslator(
            body, response_id=rid, created_at=ex.created, tools=own.tools, seal=store.sealer.seal,
            compaction=own.compaction))
        run.translator.encode = encoder(run.record, run_state.diagnose)
        # GET finds it at once (its key's GET); the store bounds it
        write = store.put(dict(queued), {"items": []}, partial(kept_inputs, body), owner=ex.key.name)
        if write is not None:
            await write  # a store that cannot take it: the POST is refused, nothing has gone upstream
        self.runs[rid] = run
        self._evict()
        run.task = asyncio.get_running_loop().create_task(self._run(run, self.runner.flow_of(ex)),
                                                          name=f"qwen: background {rid}")
        ex.notes.append("background: answered queued, the turn runs on")
        outcome.handed_on(ex)
        return dict(queued)

    def _evict(self) -> None:
        finished = [rid for rid, r in self.runs.items() if r.done.is_set()]
        for rid in finished[:max(0, len(self.runs) - KEEP_RUNS)]:
            del self.runs[rid]

    async def cancel(self, run: Run) -> dict[str, Any]:
        """Stop a run; its Response (status `cancelled`, or how it ended if it had)."""
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
    """A background run's transport (turn.Transport): its events recorded for later readers (the translator's
    `encode` is `Run.record`), a refusal its `response.failed`, its final Response stored at its end whatever
    the outcome (and kept for previous_response_id)."""

    capture = 0
    keeps = True
    ends_record = True
    client = None

    def __init__(self, run: Run) -> None:
        self.run = run

    def translator(self, ex: Exchange) -> ResponsesStreamTranslator:
        return self.run.translator

    async def begin(self, ex: Exchange) -> None:
        pass

    async def send(self, outs: list[bytes]) -> None:
        pass  # recorded by the translator as they were made

    async def whole(self, ex: Exchange, answer: http.Response) -> None:
        ex.fail(502, "invalid_upstream_response", "Qwen answered with no stream.")
        self.run.translator.fail({"message": "Qwen answered with no stream.", "type": "server_error"})

    async def refuse(self, ex: Exchange, err: GatewayError) -> None:
        self.run.translator.fail({"message": err.message, "code": err.code, "type": err.type})

    def cancelled(self, ex: Exchange) -> None:
        outcome.stream_broken(ex, "cancelled (POST /v1/responses/{id}/cancel)")
        if not self.run.translator.ended:
            self.run.translator.cancel()

    def ended(self, ex: Exchange, final: dict | None) -> None:
        run = self.run
        try:
            if ex.endpoint is not None and ex.endpoint.finished is not None:
                ex.endpoint.finished(ex, run.response())
        except Exception:
            log.exception("qwen: could not store a background response")
        finally:
            run.done.set()
            outcome.ended(ex)
