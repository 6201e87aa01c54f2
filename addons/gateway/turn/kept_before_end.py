"""What an endpoint keeps of a streamed answer (a stored Response, a stored chat completion), kept before the
stream's end goes out: the client never hears an answer is complete that was not kept.

The stream's final events are parked (`StreamRewriter.park`), the endpoint keeps its final object then (its
write starts), and the exchange's `gate` opens when the write is done (at once when there is nothing to
keep); the pump waits for it, at most KEEP_WAIT_S, before it lets the end out. A write that failed takes the
end back: the client hears the answer was not kept, never that it is done."""

from __future__ import annotations

import asyncio
import logging

from ..storage.health import StateUnavailable
from ..errors import gateway_error
from ..exchange import Exchange
from ..live_stream import LiveStream
from .stream_rewriter import StreamRewriter, stream_error

KEEP_WAIT_S = 10.0  # a kept answer's database write, at most, before its end goes out (stream, turn, whole)
log = logging.getLogger("qwen")


def final_object(rw: LiveStream) -> dict | None:
    """A stream translator's final object (the Responses API keeps it), if it builds one."""
    build = getattr(rw.translator, "response", None)
    return build() if callable(build) and not rw.error else None


def hold_end_until_kept(ex: Exchange, rw: StreamRewriter) -> None:
    """When the endpoint keeps the answer before the end: the end parked, the gate made."""
    if ex.turn.keep_before_end:
        gate = ex.turn.gate = asyncio.get_running_loop().create_future()
        rw.park = lambda: keep_early(ex, gate)


def keep_early(ex: Exchange, gate: asyncio.Future) -> None:
    """The stream's final events are parked: the endpoint keeps its final object now, the gate opens once
    the write is done."""
    rw = ex.turn.rewriter
    final = final_object(rw) if rw is not None else None
    write = None
    if final is not None and ex.endpoint is not None and ex.endpoint.finished is not None:
        ex.turn.kept = True  # the settlement does not keep it twice
        try:
            ex.endpoint.finished(ex, final)
        except StateUnavailable as e:
            unkept(ex, e)
        write = ex.turn.write
    also = [asyncio.ensure_future(w) for f in ex.turn.before_end if (w := f(ex)) is not None]  # never fail

    def opened(_: object = None) -> None:
        if isinstance(write, asyncio.Future) and (write.cancelled() or write.exception() is not None):
            failure = None if write.cancelled() else write.exception()
            unkept(ex, failure if isinstance(failure, StateUnavailable) else None)
        if not gate.done():
            gate.set_result(None)

    waits = [w for w in (write,) if isinstance(w, asyncio.Future)] + also
    if waits:
        asyncio.gather(*waits, return_exceptions=True).add_done_callback(opened)
    else:
        opened()


def unkept(ex: Exchange, e: StateUnavailable | None) -> None:
    """The parked end of `ex`'s stream becomes the dialect's failure event: its answer was not kept."""
    err = gateway_error(e or StateUnavailable("The gateway could not store the response in time; try again later."))
    ex.result.stream_error = err.message
    ex.turn.unkept = True
    if ex.turn.rewriter is not None:
        ex.turn.rewriter.unkept(stream_error(err.message, code=err.code or "state_unavailable"))


async def until_kept(ex: Exchange, what: str) -> None:
    """Wait for a parked stream's answer to be kept (keep_early opens the gate), at most KEEP_WAIT_S: a write
    still pending then is not reported done (the end becomes a failure), and the end goes out."""
    gate = ex.turn.gate
    if gate is None or gate.done():
        return
    try:
        await asyncio.wait_for(asyncio.shield(gate), KEEP_WAIT_S)
    except TimeoutError:
        log.warning("qwen: %s's end waited %g s for its answer to be kept", what, KEEP_WAIT_S)
        unkept(ex, None)
