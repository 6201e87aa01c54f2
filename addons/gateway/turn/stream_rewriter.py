"""The `flow.response.stream` callable: upstream SSE bytes in, client SSE bytes out, event by event.

The two halves of the chat form meet here: the upstream's `ChunkSource` turns its events into normalised
chat chunks, the client dialect's `StreamTranslator` turns those into the client's events (interfaces.py).
An event that is an error object (OpenAI's `{"error": …}`, in whichever SSE shape Qwen wraps it) ends the stream
in the client's error format.

A stream's end is a fact, decided here and nowhere else: the answer is whole only when Qwen said so — every choice's
finish (the dialect's own end on a pass-through pair). `[DONE]` with a choice unfinished is a break like any other
(`DONE_EARLY`): Qwen's `[DONE]` says the stream is over, not that the answer is. Anything else — the body ending
early, the connection reset, a read that timed out, a line or a character cut in half — is a break (`upstream_end`,
`cut`): an event not yet complete is dropped, never decoded, and the break is either held for the turn to continue
(`holds_breaks`) or the client's terminal error. Never a clean close on a broken answer.

Once every choice finished (`whole`), what may still come is Qwen's usage and its `[DONE]`: the turn's pump gives them
a short time (turn/runner.py, `TAIL_S`), then ends the answer whole without them (`unfinished_end`, its usage unknown
when none came); at `[DONE]` the stream is over whatever Qwen's body does after it.

mitmproxy's contract (see docs/troubleshooting.md): it is called per received chunk and
once more with b"" at the end; it must never raise (the client would hang) and must never
return b"" mid-stream (that ends HTTP/1 chunking). So this returns a list, maybe empty.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .. import sse
from ..errors import ErrorKind, UpstreamError, openai_type
from ..interfaces import ChunkSource, StreamTranslator
from ..sse import SSEDecoder

log = logging.getLogger(__name__)


def stream_error(message: str, code: str = "upstream_error", type: str = "server_error") -> dict:
    return {"message": message, "type": type, "code": code, "param": None}


# How the record names a break (the request line's and the ledger's `cut`; docs/compatibility.md)
ENDED_EARLY = "Qwen ended the stream before the answer was complete"
DONE_EARLY = "Qwen sent [DONE] before the answer was complete (a choice without its finish)"


class StreamRewriter:
    def __init__(self, normalizer: ChunkSource, translator: StreamTranslator, *, capture_limit: int = 0,
                 choices: int = 1, holds_breaks: bool = False) -> None:
        self.normalizer = normalizer
        self.translator = translator
        self.choices = max(1, choices)  # the answer's choices: whole when each has its finish (or at [DONE])
        self.decoder = SSEDecoder()
        self.capture_limit = capture_limit
        self.captured = bytearray()
        self.capture_truncated = False
        self.finished = False
        self.error: dict | None = None  # the OpenAI error the client got, if the stream failed
        # What Qwen reported inside the stream (an error event or error_finish), for the pool: see `throttled`.
        self.upstream_error: UpstreamError | None = None
        self.first_byte_at: float | None = None  # first bytes sent to the client (monotonic)
        self.last_byte_at: float | None = None
        self.last_upstream_at = time.monotonic()  # last bytes from Qwen, for the idle watchdog
        self.bad_events = 0
        self.cuts = 0  # breaks of Qwen's stream (cut, ended early, silent), continued or not
        self.dropped = 0  # bytes of events cut in half: dropped, never decoded
        self.unfinished_end = False  # whole by every choice's finish, but Qwen's [DONE] never came
        # Set when the answer must be kept (committed to a shared database) before the client hears it is
        # complete: the final events are parked at Qwen's [DONE], `park` is called (it starts the write),
        # and they go out at the end of the relayed stream, which the relay sends once the write is done.
        # `park` is also called when the stream fails (nothing to keep: `error` is set).
        self.park: Callable[[], None] | None = None
        self.held: list[bytes] | None = None
        # True while the turn may continue the answer (turn/continuation.py): a break is then held in `broken`
        # (the client hears nothing of it) for the turn to continue, or to give up on and send after all
        self.holds_breaks = holds_breaks
        self.broken: dict | None = None

    def __call__(self, chunk: bytes) -> list[bytes]:
        """Qwen's bytes as they came; b"": the relayed stream's end (what was not decided is a break now, no
        longer continued), then the parked final events."""
        self.last_upstream_at = time.monotonic()
        if chunk == b"":
            self.holds_breaks = False
        try:
            out = self._process(chunk)
        except Exception as e:  # never into mitmproxy's core: end the stream in the client's error instead
            log.exception("qwen: stream translation failed")
            out = [] if self.finished else self._fail(stream_error(f"gateway stream error: {type(e).__name__}"))
        if chunk == b"" and self.held is not None:  # the end of the stream: the parked final events
            out, self.held = out + self.held, None
        if out:
            self._sent(out)
        return out

    def _sent(self, out: list[bytes]) -> None:
        now = time.monotonic()
        self.first_byte_at = self.first_byte_at or now
        self.last_byte_at = now
        self._capture(out)

    def run(self, body: bytes) -> bytes:
        """Translate a whole buffered stream (a retried request's answer)."""
        return b"".join([*self(body), *self(b"")])

    def _process(self, chunk: bytes) -> list[bytes]:
        if self.finished:
            return []
        if chunk == b"":
            return self._stopped(ENDED_EARLY + ".", "upstream_error")
        out: list[bytes] = []
        for ev in self.decoder.feed(chunk):
            out += self._event(ev.data, ev.event)
            if self.finished:
                return out
        return out

    def _stopped(self, message: str, code: str) -> list[bytes]:
        """Qwen's stream is over without its `[DONE]` (`message`, `code`: why, in the client's words): whole if
        every choice finished, else a break — what had not become whole events is dropped."""
        if self.finished:
            return []
        self.dropped += self.decoder.drop()
        if self._whole():
            self.unfinished_end = True  # the answer is whole; what came after its finish (usage, [DONE]) did not
            return self._finish()
        self.cuts += 1
        return self._broke(stream_error(message, code))

    def _whole(self) -> bool:
        finished = self.normalizer.finish_reasons
        return all(i in finished for i in range(self.choices))

    @property
    def whole(self) -> bool:
        """The stream is decided, or every choice has its finish: what may still come is Qwen's usage and [DONE]."""
        return self.finished or len(self.normalizer.finish_reasons) >= self.choices and self._whole()

    def _event(self, data: str, name: str | None = None) -> list[bytes]:
        if not data:
            return []
        if data.strip() == "[DONE]":
            if self._whole():
                return self._finish()
            self.cuts += 1  # the stream is over, the answer is not: a break
            return self._broke(stream_error(DONE_EARLY + ".", "upstream_error"))
        obj = sse.event_json(data, name)
        if obj is None:
            self.bad_events += 1
            log.warning("qwen: skipped an upstream event that is not JSON (%d bytes)", len(data))
            return []
        if isinstance(obj, dict) and obj.get("error") and not obj.get("choices"):
            self.upstream_error = self.normalizer.fault(obj["error"])
            return self._broke(_as_openai_error(obj["error"], self.upstream_error))
        out: list[bytes] = []
        for chunk in self.normalizer.feed(obj):
            out += self.translator.feed(chunk)
        if self.normalizer.error_text is not None:
            err = self.upstream_error = self.normalizer.fault(self.normalizer.error_text)
            out += self._broke(stream_error(err.message, err.code or "upstream_error", openai_type(err.type)))
        return out

    @property
    def upstream_kind(self) -> ErrorKind | None:
        """The kind of error Qwen reported inside the stream, if any."""
        return self.upstream_error.kind if self.upstream_error else None

    @property
    def throttled(self) -> bool:
        """The stream ended in Qwen's throttling error: the core reports THROTTLE to the pool."""
        return self.upstream_kind is ErrorKind.THROTTLE

    def _finish(self) -> list[bytes]:
        self.finished = True
        out = self.translator.finish()
        if self.park is None:
            return out
        self.held = out
        self._parked()
        return []

    def _fail(self, error: dict) -> list[bytes]:
        self.finished = True
        self.error = error
        out = self.translator.fail(error)
        if self.park is not None:
            self._parked()
        return out

    def _broke(self, error: dict) -> list[bytes]:
        """Qwen's answer broke off: held when the turn may continue it (`holds_breaks`), else the client's error."""
        if self.holds_breaks:
            self.finished, self.broken = True, error
            return []
        return self._fail(error)

    def upstream_end(self) -> list[bytes]:
        """Qwen's body ended (the HTTP answer complete): the answer is whole only if Qwen said so; else a break."""
        return self._now(self._process(b""))

    def cut(self, message: str, code: str) -> list[bytes]:
        """Qwen's stream broke (the connection failed or went silent): a break, wherever the bytes stopped."""
        return self._now(self._stopped(message, code))

    def _now(self, out: list[bytes]) -> list[bytes]:
        if out:
            self._sent(out)
        return out

    def told(self) -> UpstreamError | None:
        """What Qwen reported inside the stream, once: the turn told the pool of it (the settlement does not again)."""
        err, self.upstream_error = self.upstream_error, None
        return err

    def read_through(self, source: ChunkSource) -> None:
        """Upstream events read through `source` from now on (the answer so far, which the turn follows)."""
        self.normalizer = source

    def resume(self) -> None:
        """A continuation's stream follows the broken one (its chunk source put in place by the turn)."""
        self.decoder, self.finished, self.broken, self.upstream_error = SSEDecoder(), False, None, None

    def give_up(self) -> list[bytes]:
        """The held break goes to the client after all: the answer was not continued."""
        error, self.broken, self.holds_breaks = self.broken, None, False
        return self._ended(error) if error is not None else []

    def ended(self, error: dict) -> list[bytes]:
        """The gateway ends the stream itself (it is stopping): the client's error, never continued."""
        self.holds_breaks = False
        if self.broken is None and self.finished:
            return []
        self.broken = None
        self.dropped += self.decoder.drop()
        return self._ended(error)

    def _ended(self, error: dict) -> list[bytes]:
        out = self._fail(error)
        if out:
            self._sent(out)
        return out

    def unkept(self, error: dict) -> None:
        """The parked end is taken back (the answer could not be kept): the translator's failure event in
        place of its terminal event, when it can give one (the Responses API's `response.failed`)."""
        take_back = getattr(self.translator, "unkept", None)
        if self.held is not None and callable(take_back):
            self.held = take_back(self.held, error)

    def _parked(self) -> None:
        park, self.park = self.park, None
        try:
            if park is not None:
                park()
        except Exception:
            log.exception("qwen: could not keep a finished stream's answer")

    def _capture(self, out: list[bytes]) -> None:
        if self.capture_truncated or not self.capture_limit:
            return
        for part in out:
            room = self.capture_limit - len(self.captured)
            if len(part) > room:
                self.captured += part[:room]
                self.capture_truncated = True
                return
            self.captured += part


def _as_openai_error(err: object, kind: UpstreamError) -> dict:
    if kind.kind is ErrorKind.THROTTLE:
        return stream_error(kind.message, "rate_limit_exceeded", "requests")
    if isinstance(err, dict):
        code = err.get("code")
        return {
            "message": str(err.get("message") or "Qwen reported an error mid-stream."),
            "type": openai_type(err.get("type")),
            "code": str(code) if code is not None else kind.code or "upstream_error",
            "param": err.get("param"),
        }
    return stream_error(str(err))
