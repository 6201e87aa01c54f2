"""JSON on the hot path. orjson writes JSON about ten times faster than the standard library (a long
conversation is re-sent on every turn) and reads Qwen's answers faster; its output is compact, UTF-8,
and otherwise what `json.dumps(..., ensure_ascii=False)` writes. Where orjson refuses a value the
standard library takes (an integer beyond 64 bits, a lone surrogate from a `\ud800` escape), the
standard library writes it with ASCII escapes: the value goes on as the client sent it, in valid UTF-8.
Client bodies are read by the standard library: orjson would turn an integer beyond 64 bits into a
float and refuse NaN, and the client's numbers go to Qwen as sent.
"""

from __future__ import annotations

import json

import orjson


def dumps(obj: object) -> bytes:
    """Compact UTF-8 JSON."""
    try:
        return orjson.dumps(obj)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(obj, separators=(",", ":")).encode("ascii")


def dumps_text(obj: object) -> str:
    return dumps(obj).decode("utf-8")


def loads_answer(data: bytes | str) -> object:
    """Qwen's answers and stream events (raises ValueError when it is not JSON)."""
    return orjson.loads(data)
