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

# After every choice's finish, how long Qwen's usage, [DONE] and the body's end may take before the answer ends whole
# without them: Model Studio sends all three within milliseconds of the finish; 3 s is far past a loaded server's
# gap and short of anything a client would take for a hang.
TAIL_S = 3.0
# When [DONE] came with the finish, how long the body's end may take (the connection then goes back to the pool)
# before the connection is closed instead and the client's stream ends: it comes with [DONE] or a moment after.
DRAIN_S = 1.0


async def tail(chunks: AsyncIterator[bytes], rw: StreamRewriter, send: Send) -> list[bytes]:
    """The answer is whole: Qwen's usage, [DONE] and the body's end read for at most TAIL_S (DRAIN_S when [DONE]
    came already) — one timer a stream, however the reads fall —, then the answer ends whole without what did not
    come (its usage unknown when none came): whatever Qwen's body does after a whole answer, the client's stream
    ends. What is left to send."""
    try:
        async with asyncio.timeout(DRAIN_S if rw.finished else TAIL_S):
            async for chunk in chunks:
                if rw.finished:
                    continue  # past [DONE]: read only to reach the body's end
                if chunk and (out := rw(chunk)):
                    await send(out)
                if rw.broken is not None:
                    return []
    except TimeoutError:
        pass
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
