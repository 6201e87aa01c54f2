"""A streamed answer's first event read before the client hears anything: an error there is Qwen refusing the
request, the same refusal as an HTTP error status (the retry policy's to decide; a client that gets it gets its
class: a 400 stays a 400), whatever SSE shape carries it — `data: {"error": …}`, `event: error`, the wrapped
`data: data: {…}`, an `error_finish` chunk (sse.event_json). Otherwise the answer goes on, its first bytes
replayed: nothing is held beyond the first event, which the client would be waiting for anyway.

A stream that ends or breaks before its first event is handed on as it is, the break replayed at its place: the
turn decides what a break is (turn/stream_rewriter.py), here as anywhere in the stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping

from .. import sse
from ..errors import ConnectionFailed, UpstreamError
from ..interfaces import ChunkSource, UpstreamAnswer


class Replayed:
    """An answer whose first bytes were read already (`head`): they come first again, then the rest as it comes,
    then the break that stopped the first read, if one did (`broke`)."""

    def __init__(self, resp: UpstreamAnswer, rest: AsyncIterator[bytes], head: bytes,
                 broke: ConnectionFailed | None = None, over: bool = False) -> None:
        self.resp, self.rest, self.head = resp, rest, head
        self.broke, self.over = broke, over

    @property
    def status_code(self) -> int:
        return self.resp.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return self.resp.headers

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        head, self.head = self.head, b""
        if head:
            yield head
        if self.broke is not None:
            broke, self.broke = self.broke, None
            raise broke
        if self.over:
            return
        async for chunk in self.rest:
            yield chunk

    async def aread(self) -> bytes:
        return b"".join([chunk async for chunk in self.aiter_raw()])

    async def aclose(self) -> None:
        await self.resp.aclose()


async def first_event(resp: UpstreamAnswer, source: Callable[[], ChunkSource]
                      ) -> tuple[UpstreamAnswer, UpstreamError | None]:
    """`resp` read up to its first event: (the answer to stream on, None), or (the answer, Qwen's refusal) when the
    first event is an error — a fresh chunk source of the upstream (`source()`) says what it means."""
    rest = aiter(resp.aiter_raw())
    head = b""
    try:
        async for chunk in rest:
            head += chunk
            if (block := sse.first_event(head)) is not None:
                return Replayed(resp, rest, head), refusal(block, source)
    except ConnectionFailed as e:
        return Replayed(resp, rest, head, broke=e), None
    return Replayed(resp, rest, head, over=True), None


def refusal(block: bytes, chunks: Callable[[], ChunkSource]) -> UpstreamError | None:
    """What a first event that is an error means (None: it is the answer's start, not decoded twice)."""
    if b"error" not in block:
        return None
    ev = sse.decode_one(block)
    if ev is None:
        return None
    obj = sse.event_json(ev.data, ev.event)
    if not isinstance(obj, dict):
        return None
    source = chunks()
    if obj.get("error") and not obj.get("choices"):
        return source.fault(obj["error"])
    if obj.get("choices"):
        source.feed(obj)
        if source.error_text is not None:
            return source.fault(source.error_text)
    return None
