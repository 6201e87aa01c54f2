"""Anthropic's `stop_sequences`, applied by the gateway.

Qwen takes OpenAI's `stop`, ends before the sequence without writing it, and says `finish_reason: "stop"`
as it does at a natural end: neither whether a sequence ended the answer nor which one. Anthropic answers
`stop_reason: "stop_sequence"` with the sequence matched, and clients branch on it. So the sequences are
not sent to Qwen: the gateway cuts the text at the first one that appears and reports it, whole and
streamed. (Qwen then writes on to its natural end, unseen; its usage counts those tokens.)
"""

from __future__ import annotations


def sequences(body: dict) -> tuple[str, ...]:
    """The request's stop sequences (validated by request.py), the empty ones left out."""
    value = body.get("stop_sequences")
    return tuple(s for s in value if isinstance(s, str) and s) if isinstance(value, list) else ()


def first_stop(text: str, stops: tuple[str, ...]) -> tuple[int, str] | None:
    """(where, sequence) of the sequence that appears first in `text` (the longest of those starting there)."""
    found = [(at, -len(s), s) for s in stops if (at := text.find(s)) >= 0]
    if not found:
        return None
    at, _, stop = min(found)
    return at, stop


def cut(text: str, stops: tuple[str, ...]) -> tuple[str, str | None]:
    """A whole answer's text up to the first stop sequence, and that sequence (None: none appears)."""
    hit = first_stop(text, stops) if stops else None
    return (text, None) if hit is None else (text[:hit[0]], hit[1])


class StopScanner:
    """Streamed text in, what may go to the client now out. A tail that could be the start of a sequence is
    held back (fewer characters than the longest sequence) until the next delta, or the end, settles it."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self.held = ""
        self.matched: str | None = None

    def feed(self, text: str) -> str:
        if self.matched is not None:
            return ""  # the answer ended at the sequence: nothing after it is the client's
        text = self.held + text
        hit = first_stop(text, self.stops)
        if hit is not None:
            self.held, self.matched = "", hit[1]
            return text[:hit[0]]
        keep = max((n for s in self.stops for n in range(1, len(s)) if text.endswith(s[:n])), default=0)
        self.held = text[len(text) - keep:] if keep else ""
        return text[:len(text) - keep]

    def flush(self) -> str:
        """The held tail, once the text is over (it was no sequence's start after all)."""
        held, self.held = self.held, ""
        return held
