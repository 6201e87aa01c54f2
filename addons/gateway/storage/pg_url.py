"""A `qwen_state_url`'s rules (pg.py re-exports them): no password in it, a URL libpq can use (its own parser,
and host names a resolver takes), what logs may print of it, SQL written for SQLite made psycopg's, and stable
advisory-lock keys."""

from __future__ import annotations

import contextlib
import ipaddress
import re
import zlib
from urllib.parse import urlsplit, urlunsplit

from .pg_faults import libpq_params

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
        raise _password_error()
    params = _libpq_params(url)
    if "password" in params:  # a parameter name libpq decoded (`passwor%64=`)
        raise _password_error()
    for host in params.get("host", "").split(","):
        if why := host_problem(host):
            raise StateUrlError(f"qwen_state_url's host {host[:80]!r} is not a host name: {why}")
    for addr in filter(None, params.get("hostaddr", "").split(",")):
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(addr)
            continue
        raise StateUrlError(f"qwen_state_url's hostaddr {addr[:80]!r} is not an IP address")
    for port in filter(None, params.get("port", "").split(",")):
        if not (port.isdigit() and 0 < int(port) < 65536):
            raise StateUrlError(f"qwen_state_url's port {port[:20]!r} is not a port number")
    return url


def _password_error() -> StateUrlError:
    return StateUrlError("qwen_state_url must not carry a password: put it in PGPASSFILE or ~/.pgpass "
                         "(or PGPASSWORD) for libpq to read")


def _libpq_params(url: str) -> dict[str, str]:
    """The URL's parameters as libpq reads them: an unknown option, a space where libpq wants none, a bracket
    left open is a StateUrlError here rather than a failure at every connection."""
    try:
        return libpq_params(url)
    except ValueError as e:  # libpq's words, the URL itself elided (pg_faults.py)
        raise StateUrlError(f"libpq cannot use qwen_state_url: {e}") from None


_HOST_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def host_problem(host: str) -> str | None:
    """Why a resolver would not take `host` (libpq's resolver, or psycopg's, which raises UnicodeError for a
    label over 63 characters), or None: a name, an IP address, a Unix socket's folder or empty (libpq's
    default)."""
    if not host or host.startswith(("/", "@")):
        return None
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return None
    if any(ch.isspace() for ch in host):
        return "it has a space in it"
    try:
        name = host.encode("idna").decode("ascii")  # the IDNA rules: every label 1 to 63 characters
    except UnicodeError:
        return "a label (the part between two dots) is empty or longer than 63 characters"
    if len(name.rstrip(".")) > 253:
        return "it is longer than 253 characters"
    if not _HOST_NAME.fullmatch(name):
        return "it has characters a host name cannot have"
    return None


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
