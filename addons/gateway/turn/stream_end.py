"""Where a streamed answer's reading ends (the turn's pump, turn/runner.py, and a whole answer Qwen could only stream,
turn/whole_answer.py): at a break the rewriter holds, at the body's end, or as soon as the answer is whole — every
choice's finish, then Qwen's usage and [DONE] read for a short while (`tail`), never waited for past that, whatever
Qwen's body does after a whole answer. The rewriter (turn/stream_rewriter.py) decides whether it was whole."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from ..errors import ConnectionFailed, UpstreamTimeout
from ..interfaces import UpstreamAnswer
from . import Send
from .stream_rewriter import StreamRewriter

# After every choice's finish, how long Qwen's usage and [DONE] may take before the answer ends whole without them:
# Model Studio sends both within milliseconds of the finish; 3 s is far past a loaded server's gap and short of
# anything a client would take for a hang.
TAIL_S = 3.0
# After [DONE], how long the body's own end may take to arrive (the connection then goes back to the pool) before
# the connection is closed instead: it comes with [DONE] or a moment after; the client's end waits no longer.
DRAIN_S = 0.05


async def tail(chunks: AsyncIterator[bytes], rw: StreamRewriter, send: Send) -> list[bytes]:
    """The answer is whole: Qwen's usage and [DONE] read for at most TAIL_S, then the answer ends whole without
    them (its usage unknown when none came); after [DONE], the body's end read for at most DRAIN_S, never waited
    for longer — whatever Qwen's body does after a whole answer, the client's stream ends. What is left to send."""
    loop = asyncio.get_running_loop()
    until = loop.time() + (DRAIN_S if rw.finished else TAIL_S)
    while True:
        try:
            async with asyncio.timeout_at(until):
                chunk = await anext(chunks)
        except (StopAsyncIteration, TimeoutError):
            break
        if rw.finished:
            continue  # past [DONE]: read only to reach the body's end
        if chunk and (out := rw(chunk)):
            await send(out)
        if rw.broken is not None:
            return []
        if rw.finished:
            until = loop.time() + DRAIN_S
    return rw.upstream_end()  # nothing when [DONE] came; else the answer whole without it (unfinished_end)


async def relayed(resp: UpstreamAnswer, rw: StreamRewriter, send: Send, idle_timeout: float = 0) -> None:
    """One upstream answer's events into the client's, each sent at once, to its end, to a break the rewriter holds
    for a continuation (the rest is not read), or to the answer whole (every choice's finish): then `tail`. However
    the answer stops — its body over, the connection broken or silent — the rewriter decides whether it was whole."""
    chunks = resp.aiter_raw()
    try:
        async for chunk in chunks:
            if chunk and (out := rw(chunk)):
                await send(out)
            if rw.broken is not None:
                return
            if rw.whole:
                break
        else:
            out = rw.upstream_end()
            if out:
                await send(out)
            return
        out = await tail(chunks, rw, send)
    except UpstreamTimeout:
        out = rw.cut(f"Qwen sent nothing for {idle_timeout:g} s: the gateway ended the stream "
                     "(qwen_stream_idle_timeout).", "stream_idle_timeout")
    except ConnectionFailed as e:
        out = rw.cut(f"Qwen broke off the stream: {e}.", "upstream_connection_error")
    if out:
        await send(out)
