"""JSON on the hot path. orjson writes JSON about ten times faster than the standard library (a long
conversation is re-sent on every turn) and reads Qwen's answers faster; its output is compact, UTF-8,
and otherwise what `json.dumps(..., ensure_ascii=False)` writes. Where orjson refuses a value the
standard library takes (an integer beyond 64 bits, a lone surrogate from a `\\ud800` escape), the
standard library writes it: numbers as sent, a lone surrogate (what JavaScript's `JSON.stringify` writes
for a string cut inside an emoji) as U+FFFD, the replacement character any strict UTF-8 reader would put
there: what goes to Qwen is valid UTF-8 with no escape a strict server could choke on.
Client bodies (`loads_client`) are read by orjson too, twice as fast on an agent's long conversation, except
where it would read them differently: it turns an integer beyond 64 bits into a float (the client's numbers
go to Qwen as sent), and refuses what the standard library takes (NaN, 1E400, a byte-order mark, a lone
surrogate, a body in UTF-16): those bodies are read by the standard library, as before, a lone surrogate
becoming U+FFFD.
"""

from __future__ import annotations

import json
import re

import orjson

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads joins escaped pairs: whatever is left is lone


def dumps(obj: object) -> bytes:
    """Compact UTF-8 JSON."""
    try:
        return orjson.dumps(obj)
    except (TypeError, orjson.JSONEncodeError):
        return valid_text(json.dumps(obj, separators=(",", ":"), ensure_ascii=False)).encode("utf-8")


def valid_text(text: str) -> str:
    """`text` with each lone surrogate replaced by U+FFFD: encodable as UTF-8 (SQLite, hashes, the wire)."""
    return text if text.isascii() else _LONE_SURROGATE.sub("\ufffd", text)


def dumps_text(obj: object) -> str:
    return dumps(obj).decode("utf-8")


# Integers beyond 64 bits have 19 digits at least: any run of 19 digits (in a number or in a string) and the
# body is read by the standard library. `translate` marks every digit "0", anything else " "; the search is memmem.
_DIGITS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_NUMBER = b"0" * 19


# A lone surrogate (what JavaScript's JSON.stringify writes for a string cut inside an emoji) is no Unicode
# text: it becomes U+FFFD as the body is read, as it would on the wire to Qwen, so that nothing the client
# sent breaks a later writer (mitmproxy's flow files, SQLite, the ledger). orjson refuses one; json.loads
# joins escaped pairs, and only a body with a surrogate's escape (or its raw bytes) at all is walked again.
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def loads_client(data: bytes) -> object:
    """A client's JSON body: what `json.loads` returns for it, each lone surrogate as U+FFFD, or the error it
    raises (ValueError, UnicodeDecodeError, RecursionError). tests/unit/test_jsonio.py holds the two readers
    to the same results."""
    if _LONG_NUMBER not in data.translate(_DIGITS):
        try:
            return orjson.loads(data)  # it takes no lone surrogate: nothing to mend
        except orjson.JSONDecodeError:
            pass  # not JSON to orjson: the standard library decides (and words the error)
    value = json.loads(data)
    if _SURROGATE.search(data):
        value = json.loads(valid_text(json.dumps(value, ensure_ascii=False)))
    return value


def loads_answer(data: bytes | str) -> object:
    """Qwen's answers and stream events (raises ValueError when it is not JSON)."""
    return orjson.loads(data)


class Encoder:
    """`json.dumps(obj, **options)` for data parsed from JSON (no cycles to check), its encoder made once:
    `JSONEncoder.encode` builds the standard library's C encoder again for every call."""

    def __init__(self, **options) -> None:
        std = json.JSONEncoder(check_circular=False, **options)
        make = json.encoder.c_make_encoder  # type: ignore[attr-defined]  # None without the C accelerator
        quote = json.encoder.encode_basestring_ascii if std.ensure_ascii else json.encoder.encode_basestring
        if make is None or std.indent is not None:
            self._encode = lambda obj, _level: std.iterencode(obj)
        else:
            self._encode = make(None, std.default, quote, std.indent, std.key_separator, std.item_separator,
                                std.sort_keys, std.skipkeys, std.allow_nan)

    def __call__(self, obj: object) -> str:
        return "".join(self._encode(obj, 0))
