"""What the exchange record holds of a stream the turn is serving: the shape of the turn's stream rewriter
(turn/stream_rewriter.StreamRewriter) as the turn's own modules read it back from `ex.turn.rewriter`. A Protocol
here, below exchange.py, so that the record imports nothing from above it (tests/repo/test_layers.py)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .interfaces import ChunkSource, StreamTranslator


@runtime_checkable
class LiveStream(Protocol):
    normalizer: ChunkSource  # the upstream's decoder: usage and finish reasons once it reported them
    translator: StreamTranslator  # the client's encoder (a Responses stream builds its final object from it)
    capture_limit: int  # bytes of the stream kept for a viewer (0: none kept)
    captured: bytearray
    finished: bool  # the stream's end was sent
    error: dict | None  # the OpenAI error the client got, if the stream failed
    first_byte_at: float | None  # first bytes sent to the client (monotonic)
    cuts: int  # times Qwen's stream broke before its end (each continued, or the last ended in `error`)
    dropped: int  # bytes of events a break cut in half: dropped, never sent
    unfinished_end: bool  # whole by every choice's finish, but Qwen's [DONE] never came

    @property
    def throttled(self) -> bool:
        """Qwen's error inside the stream was a throttle (the pool is told so)."""
        ...

    def unkept(self, error: dict) -> None:
        """The parked end taken back: the answer could not be kept."""
        ...
