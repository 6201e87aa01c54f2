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

    def flush(self) -> list[ServerSentEvent]:
        """End of stream: an unterminated last line still counts, then dispatch."""
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
