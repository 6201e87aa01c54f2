"""Background responses (`"background": true`), the Responses API's part: what such a request needs (`check`),
and each run started (`start`): the POST answered at once with the `queued` Response, stored so that
`GET /v1/responses/{id}` finds it, while the turn runs on in the gateway's background runner (turn/background.py)
with a `ResponsesRun` record — `GET …?stream=true&starting_after=N` gives its events and `POST …/cancel`
stops it (retrieve.py).

Every event of a run is kept, encoded as it was made: a stream retrieved later replays them. mitmproxy sends an
answer the gateway makes itself whole, so a stream retrieved while the run goes on is answered when the run ends
(every event after `starting_after`, the terminal one included).
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any, cast

from ...errors import GatewayError
from ...exchange import Exchange
from ...turn.background import BackgroundRuns
from .diagnostics import encoder
from .history import kept_inputs
from .output import response_object
from .state import state
from ...stores.responses import ResponseStore
from .stream import ResponsesStreamTranslator
from .stream_parts import sse_event


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
class ResponsesRun:
    """One background response's record (turn.background.RunRecord): its events (SSE-encoded, by sequence number)
    and its Response as it stands."""

    queued: dict[str, Any]
    translator: ResponsesStreamTranslator
    events: list[bytes] = dataclasses.field(default_factory=list)
    diagnostics: dict | None = None  # the Response's prompt_cache_diagnostics, as its last event carried them

    def record(self, event: dict) -> bytes:
        data = sse_event(event)  # encoded now: the items an event carries change as the run goes on
        self.events.append(data)
        said = event["response"].get("prompt_cache_diagnostics") if isinstance(event.get("response"), dict) else None
        if said is not None:
            self.diagnostics = said
        return data

    def response(self, ended: bool) -> dict[str, Any]:
        """The Response as it stands: queued until the engine has Qwen's answer."""
        if not self.translator.seq and not ended:
            return self.queued
        out = self.translator.response()
        if self.diagnostics is not None:
            out["prompt_cache_diagnostics"] = self.diagnostics
        return out

    def since(self, starting_after: int) -> bytes:
        return b"".join(self.events[starting_after + 1:])

    def fail(self, error: dict) -> None:
        self.translator.fail(error)

    def cancel(self) -> None:
        if not self.translator.ended:
            self.translator.cancel()


async def start(runs: BackgroundRuns, store: ResponseStore, ex: Exchange) -> dict[str, Any]:
    """Queue the POST's turn once the queued Response is stored; the queued Response is the POST's answer."""
    body = ex.body or {}
    own = state(ex)
    rid = own.response_id
    queued = cast(dict[str, Any], response_object(body, response_id=rid, created_at=ex.created, status="queued",
                                                  output=[]))
    run_state = dataclasses.replace(own)
    turn = ex.fork(stream=True, chat_body={**ex.chat_body, "stream": True}, notes=[*ex.notes, "background"],
                   endpoint_state=run_state)  # kept at its end, not before (keep_before_end)
    if ex.cache_ask is not None:  # the run's prefix goes upstream: it is the one compared, and kept under rid
        turn.cache_ask = dataclasses.replace(ex.cache_ask, seen=None, comparison=None)
        run_state.diagnose = own.diagnose.forked(turn) if own.diagnose is not None else None
    record = ResponsesRun(queued, ResponsesStreamTranslator(
        body, response_id=rid, created_at=ex.created, tools=own.tools, seal=store.sealer.seal,
        compaction=own.compaction))
    record.translator.encode = encoder(record.record, run_state.diagnose)
    # GET finds it at once (its key's GET); the store bounds it
    write = store.put(dict(queued), {"items": []}, partial(kept_inputs, body), owner=ex.key.name)
    if write is not None:
        await write  # a store that cannot take it: the POST is refused, nothing has gone upstream
    runs.start(ex, turn, rid, record)
    return dict(queued)
