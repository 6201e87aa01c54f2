"""What each gateway option accepts, checked before anything uses it (docs/configuration.md).

mitmproxy checks an option's type (an int, a bool, a listed choice); the gateway's options also say what
their text means (`kind`: a URL, a readable file, a model name…) and an int's least value (`minimum`).
`problem` gives one line naming the option, what it got and what it accepts — the line the gateway
stops with at start-up and refuses a run-time change with. Pure: no mitmproxy state.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# kind -> what a value of that kind is, as the refusal says it
ACCEPTS = {
    "url": "an http:// or https:// URL",
    "postgresql_url": "postgresql://user@host:port/db (no password in it)",
    "file": "the path of a readable file",
    "folder": "the path of a folder (made if missing)",
    "model": "a model name (no spaces)",
    "host": "host names (no scheme, path or spaces)",
    "text": "printable text",
    "model_map": "alias=qwen-model entries",
    "limits": "model=tokens entries (a positive integer)",
}
_HOST = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.:-]+)$")
_MODEL = re.compile(r"^[^\s\x00-\x1f\x7f]+$")
_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]*$")
_PASSWORD = re.compile(r"(//[^/:@\s]*):[^@/\s]*@")


@dataclass(frozen=True)
class OptionSpec:
    name: str
    typespec: Any
    default: Any
    help: str
    choices: Sequence[str] | None = None
    minimum: int | None = None  # int options: the least value accepted
    kind: str | None = None  # str and list options: what each value must be (ACCEPTS)

    @property
    def accepts(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.typespec is bool:
            return "true or false"
        if self.typespec is int:
            return "an integer" + (f", {self.minimum} or more" if self.minimum is not None else "")
        return ACCEPTS.get(self.kind or "", "text")


def problem(spec: OptionSpec, value: Any) -> str | None:
    """None if `value` is one the option accepts, else the line that says why not."""
    if spec.typespec is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and (spec.minimum is None or value >= spec.minimum)
    elif spec.typespec is bool:
        ok = isinstance(value, bool)
    elif spec.choices:
        ok = value in spec.choices
    elif isinstance(value, str):
        ok = _fits(spec.kind, value)
    else:  # a list option
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) and _fits(spec.kind, v) for v in value)
    return None if ok else refusal(spec.name, value, spec.accepts)


def refusal(name: str, value: Any, accepts: str) -> str:
    shown = ", ".join(_shown(v) for v in value) if isinstance(value, (list, tuple)) else _shown(value)
    return f"option {name}: got {shown or '(nothing)'}; accepts {accepts}"


def unknown(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f"unknown option {name}" + (f" (did you mean {close[0]}?)" if close else "; `mitmdump --options` lists them")


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    text = _PASSWORD.sub(r"\1:…@", text)  # a URL's password is never repeated, even a refused URL's
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)  # seen
    return "'" + text[:80] + ("…" if len(text) > 80 else "") + "'"


def _fits(kind: str | None, value: str) -> bool:
    if kind in (None, "text"):
        return bool(_PRINTABLE.match(value))
    if not value.strip():  # empty: the default (an environment variable, a path, nothing)
        return kind not in ("model", "model_map", "limits")
    if kind == "url":
        parts = urlsplit(value.strip())
        return parts.scheme in ("http", "https") and bool(parts.hostname) and _PRINTABLE.match(value) is not None
    if kind == "postgresql_url":
        return urlsplit(value.strip()).scheme in ("postgresql", "postgres")
    if kind == "file":
        path = Path(value.strip()).expanduser()
        return path.is_file()
    if kind == "folder":
        path = Path(value.strip()).expanduser()
        return not path.exists() or path.is_dir()
    if kind == "model":
        return bool(_MODEL.match(value))
    if kind == "host":
        return bool(_HOST.match(value.strip()))
    if kind == "model_map":
        alias, sep, target = value.partition("=")
        return bool(sep and alias.strip() and _MODEL.match(target.strip()))
    if kind == "limits":
        model, sep, n = value.rpartition("=")
        return bool(sep and model.strip() and n.strip().isdigit() and int(n) > 0)
    raise ValueError(f"unknown option kind {kind!r}")
