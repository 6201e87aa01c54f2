"""Redaction of text that came from an OAuth server before it is stored or shown.

An error reply may echo what it was sent (the refresh token) or carry what it should not (a new access
token in a 500, a truncated JSON body). Such text reaches client errors, /health, `qwen-auth status` and
state.sqlite3, so everything token-shaped is replaced by `<redacted>` first:

- the value of any JSON field or `name=value` / `name: value` pair whose name contains "token"
  (also when the JSON is cut short and the string has no closing quote);
- the word after "Bearer", and a token-shaped word after "token";
- any long base64/hex-ish run (>= 16 hex digits, or >= 24 characters of a token alphabet with at
  least three digits, or anything of that alphabet >= 40 characters);
- any of the exact `secrets` given (the refresh and access tokens the caller holds), whatever their shape.

Redaction runs before truncation, so a token cut in half at the limit cannot slip through.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..redact import REDACTED  # one marker for every redaction: "<redacted>"

DEFAULT_LIMIT = 300

# "…token…": "value"   (value possibly cut short: no closing quote)
_JSON_FIELD = re.compile(r'("[^"]*token[^"]*"\s*:\s*)"(?:[^"\\]|\\.)*(?:"|$)', re.I)
# …token…=value, …token…: value, …token… value (form bodies, prose, headers)
_PAIR = re.compile(r"(\b[\w-]*token[\w-]*)(\s*[:=]\s*)(['\"]?)([^\s'\"&,;}\]]+)", re.I)
_AFTER_TOKEN = re.compile(r"(\btoken)(\s+)([^\s'\"&,;}\]]+)", re.I)
_BEARER = re.compile(r"(\bbearer)(\s+)([^\s'\"&,;}\]]+)", re.I)
_RUN = re.compile(r"[A-Za-z0-9_\-+/=~.]{16,}")
_HEX = re.compile(r"[0-9a-fA-F]{16,}")


def _token_shaped(word: str) -> bool:
    if word == REDACTED:
        return False
    digits = sum(c.isdigit() for c in word)
    if _HEX.search(word) and digits:
        return True
    return (len(word) >= 24 and digits >= 3 and any(c.isalpha() for c in word)) or len(word) >= 40


def _long_runs(m: re.Match) -> str:
    return REDACTED if _token_shaped(m.group(0)) else m.group(0)


def redact(text: str | None, *, secrets: Iterable[str | None] = (), limit: int | None = DEFAULT_LIMIT) -> str:
    """`text` with every token-shaped value replaced by <redacted>, then cut to `limit` characters."""
    out = str(text or "")
    for s in secrets:
        if s and len(s) >= 4:
            out = out.replace(s, REDACTED)
    out = _JSON_FIELD.sub(lambda m: f'{m.group(1)}"{REDACTED}"', out)
    out = _PAIR.sub(lambda m: m.group(1) + m.group(2) + m.group(3) + REDACTED
                    if m.group(4) != REDACTED and not m.group(4).startswith("[") else m.group(0), out)
    out = _BEARER.sub(lambda m: m.group(1) + m.group(2) + REDACTED, out)
    out = _AFTER_TOKEN.sub(lambda m: m.group(1) + m.group(2) + REDACTED if _token_shaped(m.group(3))
                           or len(m.group(3)) >= 12 else m.group(0), out)
    out = _RUN.sub(_long_runs, out)
    if limit is not None and len(out) > limit:
        out = out[:limit].rstrip() + "…"
    return out
