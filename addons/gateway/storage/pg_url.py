"""A `qwen_state_url`'s rules (pg.py re-exports them): no password in it, what logs may print of it, SQL written
for SQLite made psycopg's, and stable advisory-lock keys."""

from __future__ import annotations

import re
import zlib
from urllib.parse import urlsplit, urlunsplit

SCHEMES = ("postgresql", "postgres")


class StateUrlError(ValueError):
    """A `qwen_state_url` the gateway refuses (the message never repeats a password)."""


def check_url(url: str) -> str:
    """The URL as given, or StateUrlError: a postgresql:// URL with no password in it (nor in its query)."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that is not a number raises here
    except ValueError as e:
        raise StateUrlError(f"qwen_state_url is not a URL: {e}") from None
    if parts.scheme not in SCHEMES:
        raise StateUrlError(f"qwen_state_url must be a postgresql://user@host:port/db URL (got {parts.scheme!r}://)")
    if parts.password is not None or re.search(r"(^|&)password=", parts.query, re.I):
        raise StateUrlError("qwen_state_url must not carry a password: put it in PGPASSFILE or ~/.pgpass "
                            "(or PGPASSWORD) for libpq to read")
    return url


def driver_missing() -> str | None:
    """Why PostgreSQL cannot be used here (the optional extra is not installed), or None."""
    import importlib.util

    missing = [m for m in ("psycopg", "psycopg_pool") if importlib.util.find_spec(m) is None]
    if missing:
        return (f"qwen_state_url needs {' and '.join(missing)}: install the postgres extra "
                "(pip install -e '.[postgres]')")
    return None


def shown(url: str) -> str:
    """The URL with anything secret-looking removed (its query dropped: sslkey paths, options)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = (f"{parts.username}@" if parts.username else "") + host + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "(an invalid URL)"


def placeholders(sql: str) -> str:
    """`?` outside string literals becomes `%s`; a literal `%` becomes `%%` (psycopg's format)."""
    out = []
    quoted = False
    for ch in sql:
        if ch == "'":
            quoted = not quoted
        if ch == "%":
            out.append("%%")
        elif ch == "?" and not quoted:
            out.append("%s")
        else:
            out.append(ch)
    return "".join(out)


def advisory_key(text: str) -> int:
    """A stable signed 64-bit advisory-lock key for a name (an account's refresh lock)."""
    return zlib.crc32(b"qwen-gateway/" + text.encode()) | 0x5157_0000_0000
