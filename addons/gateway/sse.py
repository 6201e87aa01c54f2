"""Incremental Server-Sent Events decoding, separate from any transport.

Follows the WHATWG event-stream rules (what openai-python's SSEDecoder implements):
lines end in \\n, \\r\\n or \\r; a blank line dispatches; `data` lines join with \\n;
lines starting with ':' are comments. Feed it chunks split at any byte.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from . import jsonio


class ServerSentEvent(NamedTuple):
    """One event (a tuple: made for every event of every stream, at a third of a frozen dataclass's cost)."""

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
        buffer's end per line). A `data:` line and the blank line that ends an event — nearly every line of a
        stream — are taken here; any other line by `_line`."""
        end = buf.rfind(b"\n")  # -1: no complete line, all of it is kept
        self._buf = buf[end + 1:]
        if len(self._buf) > self._max_line:
            raise ValueError("SSE line too long")
        if end < 0:
            return []
        events: list[ServerSentEvent] = []
        data = self._data
        for line in buf[:end].decode("utf-8", "replace").split("\n"):
            if line.startswith("data:"):
                data.append(line[6:] if line.startswith(" ", 5) else line[5:])
            elif line or data or self._event is not None:
                if (ev := self._line(line)) is not None:
                    events.append(ev)
                    data = self._data
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
            data = self._data
            ev = ServerSentEvent(data[0] if len(data) == 1 else "\n".join(data), self._event, self._id, self._retry)
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


def first_event(data: bytes) -> bytes | None:
    """The first event that `data` (a stream's first bytes) holds whole, as its bytes with their blank line (None:
    none yet), comment-only blocks skipped. Only its end is looked for: a stream's opening read may hold many
    events, which are the turn's to decode; `decode_one` decodes this one, when it needs to be."""
    start = 0
    while True:
        end = data.find(b"\n\n", start)
        if end < 0 or b"\r" in data[start:end + 2]:  # another line end: the general search
            ends = [i for i in (data.find(b"\n\n", start), data.find(b"\r\n\r\n", start), data.find(b"\r\r", start))
                    if i >= 0]
            if not ends:
                return None
            end = min(ends)
        block = data[start:end + 2]
        if block[:1] != b":" or b"\ndata" in block:  # not a block of comments alone
            return block
        start = end + 2


def decode_one(block: bytes) -> ServerSentEvent | None:
    """The one event of a block `first_event` found."""
    found = SSEDecoder().feed(block + b"\n\n")
    return found[0] if found else None


def event_json(data: str, name: str | None = None) -> object | None:
    """An event's JSON (None: not JSON), also in the wrapped shape Qwen sends an error in — an `event: error` whose
    data is a second `data: {…}` line, or a JSON string holding one (dashscope-rules.md, "Learned since
    2026-11-26"); an `event: error` whose data is the error object itself comes back as `{"error": …}`."""
    try:  # what Qwen sends every event but an error: plain JSON
        obj: object = jsonio.loads_answer(data)
    except ValueError:
        obj = None
    if type(obj) is dict and name != "error":
        return obj
    for _ in range(4):  # unwrapped at most a few times: a body that nests without end is not an event
        if obj is None:  # not JSON: a second `data:` line inside this one?
            text = data.lstrip()
            if not text.startswith("data:"):
                return None
            data = text[5:]
        elif isinstance(obj, str) and obj.lstrip().startswith(("data:", "{")):  # a JSON string holding one
            text = obj.lstrip()
            data = text[5:] if text.startswith("data:") else text
        else:
            break
        try:
            obj = jsonio.loads_answer(data)
        except ValueError:
            obj = None
    if obj is None:
        return None
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
