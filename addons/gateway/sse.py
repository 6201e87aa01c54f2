"""Incremental Server-Sent Events decoding, separate from any transport.

Follows the WHATWG event-stream rules (what openai-python's SSEDecoder implements):
lines end in \\n, \\r\\n or \\r; a blank line dispatches; `data` lines join with \\n;
lines starting with ':' are comments. Feed it chunks split at any byte.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import jsonio


@dataclass(frozen=True)
class ServerSentEvent:
    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None

    def json(self) -> object:
        return json.loads(self.data)


class SSEDecoder:
    def __init__(self, max_line: int = 16 * 1024 * 1024) -> None:
        self._buf = b""
        self._max_line = max_line
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Decode what is complete in buffer + chunk; keep the unfinished tail."""
        buf = self._buf + chunk
        if b"\r" not in buf:  # every line ends in \n (what Qwen and most servers send): split once
            return self._feed_lf(buf)
        return self._feed_any(buf)

    def _feed_any(self, buf: bytes) -> list[ServerSentEvent]:
        """`feed` for any line ends: \n, \r\n or \r."""
        events: list[ServerSentEvent] = []
        start = 0
        n = len(buf)
        while True:
            i = _next_eol(buf, start)
            if i < 0:
                break
            # A lone \r at the very end may be the first half of \r\n: wait for more.
            if buf[i] == 0x0D and i + 1 == n:
                break
            line = buf[start:i]
            start = i + 2 if buf[i] == 0x0D and i + 1 < n and buf[i + 1] == 0x0A else i + 1
            ev = self._line(line.decode("utf-8", "replace"))
            if ev is not None:
                events.append(ev)
        self._buf = buf[start:]
        if len(self._buf) > self._max_line:
            raise ValueError("SSE line too long")
        return events

    def _feed_lf(self, buf: bytes) -> list[ServerSentEvent]:
        """`feed` for a buffer without \r: the lines are split and decoded in one pass each (the general
        loop looks for both line ends from every line's start, and a \r it never finds costs a scan to the
        buffer's end per line)."""
        end = buf.rfind(b"\n")  # -1: no complete line, all of it is kept
        events = [] if end < 0 else [ev for line in buf[:end].decode("utf-8", "replace").split("\n")
                                     if (ev := self._line(line)) is not None]
        self._buf = buf[end + 1:]
        if len(self._buf) > self._max_line:
            raise ValueError("SSE line too long")
        return events

    def unfinished(self) -> int:
        """Bytes of an event not yet dispatched: its lines so far (data counted as decoded) and an unended line."""
        pending = sum(len(d) + 6 for d in self._data) + (len(self._event) + 7 if self._event is not None else 0)
        return pending + len(self._buf)

    def drop(self) -> int:
        """The stream ended: an event not yet dispatched is discarded, never decoded — the WHATWG rule ("if the
        file ends in the middle of an event, before the final empty line, the incomplete event is not
        dispatched"), which openai-python's decoder keeps too. A cut inside a line or inside a character gives
        nothing half. Returns how many bytes were dropped."""
        dropped = self.unfinished()
        self._buf, self._data, self._event, self._retry = b"", [], None, None
        return dropped

    def flush(self) -> list[ServerSentEvent]:
        """End of stream, leniently (a viewer's: mitmweb shows what arrived): an unterminated last line still
        counts, then dispatch. The turn's rewriter uses `drop`."""
        events: list[ServerSentEvent] = []
        if self._buf:
            tail, self._buf = self._buf, b""
            ev = self._line(tail.decode("utf-8", "replace"))
            if ev is not None:
                events.append(ev)
        ev = self._line("")
        if ev is not None:
            events.append(ev)
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            if not self._data and self._event is None:
                return None
            ev = ServerSentEvent("\n".join(self._data), self._event, self._id, self._retry)
            self._data, self._event, self._retry = [], None, None
            return ev
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry":
            try:
                self._retry = int(value)
            except ValueError:
                pass
        return None


def first_event(data: bytes) -> ServerSentEvent | None:
    """The first event with data that `data` (a stream's first bytes) holds whole; None: none yet. Only the bytes up
    to its end are looked at (a stream's opening read may hold many events: they are the turn's to decode)."""
    start = 0
    while True:
        ends = [i for i in (data.find(b"\n\n", start), data.find(b"\r\n\r\n", start), data.find(b"\r\r", start))
                if i >= 0]
        if not ends:
            return None
        end = min(ends)
        decoder = SSEDecoder()
        found = [ev for ev in decoder._feed_any(data[start:end] + b"\n\n") if ev.data]
        if found:
            return found[0]
        start = end + 2


def event_json(data: str, name: str | None = None) -> object | None:
    """An event's JSON (None: not JSON), also in the wrapped shape Qwen sends an error in — an `event: error` whose
    data is a second `data: {…}` line, or a JSON string holding one (dashscope-rules.md, "Learned since
    2026-11-26"); an `event: error` whose data is the error object itself comes back as `{"error": …}`."""
    obj: object = None
    for _ in range(4):  # unwrapped at most a few times: a body that nests without end is not an event
        text = data.lstrip()
        if text.startswith("data:"):
            data = text[5:]
            continue
        try:
            obj = jsonio.loads_answer(data)
        except ValueError:
            return None
        if not (isinstance(obj, str) and obj.lstrip().startswith(("data:", "{"))):
            break
        data = obj
    if name == "error" and isinstance(obj, dict) and "error" not in obj and "choices" not in obj \
            and obj.get("type") != "error":
        return {"error": obj}
    return obj


def _next_eol(buf: bytes, start: int) -> int:
    a = buf.find(b"\n", start)
    b = buf.find(b"\r", start)
    if a < 0:
        return b
    if b < 0:
        return a
    return min(a, b)


def encode(data: str | Mapping[str, Any], event: str | None = None) -> bytes:
    """One SSE event. Dicts are serialised compactly, the way OpenAI's servers do."""
    if not isinstance(data, str):
        data = jsonio.dumps_text(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data}\n\n".encode()


DONE = b"data: [DONE]\n\n"
