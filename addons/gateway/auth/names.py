"""Account names (they become file names), the hint that tells how to log one in again, ISO times."""

from __future__ import annotations

import re
import time

DEFAULT = "default"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")  # \Z: `$` would let a final newline in


def check_name(name: str, *, allow_default: bool = False) -> str:
    """Account names end up in file names: letters, digits, `.`, `_`, `-` only."""
    if not NAME_RE.match(name or "") or name.endswith(".json"):
        raise ValueError(f"invalid account name {name!r}: use letters, digits, '.', '_' or '-' (max 64)")
    if name == DEFAULT and not allow_default:
        raise ValueError("'default' is the name of qwen-code's own login: use `qwen-auth login` for it")
    return name


def login_hint(name: str) -> str:
    return "qwen-auth login" if name == DEFAULT else f"qwen-auth add {name}"


def iso(ts: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else None
