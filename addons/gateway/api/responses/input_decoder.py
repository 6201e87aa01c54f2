"""The freeform text of a custom tool call, decoded as Qwen writes it, for the stream translator (stream.py).

Qwen is offered a custom tool as a function with one string parameter and writes `{"input": "…"}`; the
client wants the text itself, streamed (`custom_tool_call_input.delta`). `InputDecoder` follows the JSON
as it arrives and hands out the decoded text that is complete; items.custom_input reads the whole
arguments once the call ends.
"""

from __future__ import annotations

import json


class InputDecoder:
    """The text of the first string property of a JSON object, decoded as the object's text arrives
    (`{"input": "line\\n…` -> `line⏎…`). `feed` returns the newly decoded text; `failed` when the arguments
    do not start like such an object (then nothing can be streamed)."""

    _decoder = json.JSONDecoder(strict=False)

    def __init__(self) -> None:
        self.raw = ""
        self.start: int | None = None  # index of the first character of the value
        self.cursor = 0  # raw[start:cursor] is decoded
        self.done = False
        self.failed = False
        self.text = ""

    def feed(self, fragment: str) -> str:
        self.raw += fragment
        if self.failed or self.done:
            return ""
        if self.start is None:
            self.start = self._value_start()
            if self.start is None:
                return ""
            self.cursor = self.start
        end, closed = self._safe_end()
        if end <= self.cursor:
            self.done = closed
            return ""
        try:
            piece = self._decoder.decode('"' + self.raw[self.cursor:end] + '"')
        except ValueError:
            self.failed = True
            return ""
        self.cursor = end
        self.done = closed
        self.text += piece
        return piece

    def _value_start(self) -> int | None:
        s, n = self.raw, len(self.raw)
        i = self._expect(0, '{"')
        if i is None:
            return None
        while i < n and s[i] != '"':  # the key
            i += 2 if s[i] == "\\" else 1
        if i >= n:
            return None
        return self._expect(i + 1, ':"')

    def _expect(self, i: int, chars: str) -> int | None:
        """Past `chars` (whitespace between them allowed) from `i`; None while more text is needed, and
        `failed` when the text is not the shape this reader follows."""
        s, n = self.raw, len(self.raw)
        for expect in chars:
            while i < n and s[i] in " \t\r\n":
                i += 1
            if i == n:
                return None
            if s[i] != expect:
                self.failed = True
                return None
            i += 1
        return i

    def _safe_end(self) -> tuple[int, bool]:
        """(where the decodable text ends, whether the closing quote was reached)."""
        s, i, n = self.raw, self.cursor, len(self.raw)
        while i < n:
            c = s[i]
            if c == '"':
                return i, True
            if c != "\\":
                i += 1
                continue
            if i + 1 >= n:
                return i, False
            if s[i + 1] != "u":
                i += 2
                continue
            if i + 6 > n:
                return i, False
            high = s[i + 2].lower() == "d" and s[i + 3].lower() in "89ab"
            after = s[i + 6:i + 8]
            if high and "\\u".startswith(after):  # a high surrogate goes with the \\uXXXX after it
                if i + 12 > n:
                    return i, False
                if after == "\\u":
                    i += 12
                    continue
            i += 6
        return n, False
