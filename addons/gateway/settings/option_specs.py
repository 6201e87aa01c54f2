"""What each gateway option accepts, checked before anything uses it (docs/configuration.md).

mitmproxy checks an option's type (an int, a bool, a listed choice); the gateway's options also say what
their text means (`kind`: a URL, a readable file, a model name…), an int's least and greatest value
(`minimum`, `maximum`: also the tokens of each `limits` entry) and the longest text (`max_length`: of each
entry of a list option): each bound lies beyond what a real setup uses and below where a value stops working.
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
    "optional_model": "a model name (no spaces), or nothing",
    "host": "host names (no scheme, path or spaces; at most 253 characters, 63 between dots)",
    "text": "printable ASCII text",
    "model_map": "alias=qwen-model entries",
    "limits": "model=tokens entries",
    "routes": "condition[@scope]=target entries",
    "listen": "PORT (on 127.0.0.1) or HOST:PORT, a port from 1 to 65535, or nothing (off)",
}
_HOST = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.:-]+)\Z")
_MODEL = re.compile(r"^[^\s\x00-\x1f\x7f]+\Z")  # \Z: `$` would let a final newline in
_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]*\Z")
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]*\Z")  # what a header value may hold (text options are sent as one)
# ASCII digits only (isdigit() also passes '²', which int() refuses), and few: int() of 4,300 digits is refused
_DIGITS = re.compile(r"^[0-9]{1,18}\Z")
# DNS's limits: longer names cannot be looked up (Python's resolver raises on a label over 63 characters)
_HOST_LENGTH, _LABEL_LENGTH = 253, 63
_PASSWORD = re.compile(r"(//[^/:@\s]*):[^@/\s]*@")


@dataclass(frozen=True)
class OptionSpec:
    name: str
    typespec: Any
    default: Any
    help: str
    choices: Sequence[str] | None = None
    minimum: int | None = None  # int options: the least value accepted (`limits`: each entry's tokens)
    kind: str | None = None  # str and list options: what each value must be (ACCEPTS)
    maximum: int | None = None  # int options: the greatest value accepted (`limits`: each entry's tokens)
    max_length: int | None = None  # str options: the most characters (list options: in each entry)

    @property
    def accepts(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.typespec is bool:
            return "true or false"
        if self.typespec is int:
            return "an integer" + self._range()
        what = ACCEPTS.get(self.kind or "", "text")
        if self.kind == "limits":
            what += f" (tokens{self._range() or ', 1 or more'})"
        if self.max_length is not None:
            what += f", at most {self.max_length} characters" + (" each" if self.typespec is not str else "")
        return what

    def _range(self) -> str:
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            return f" from {low} to {high}"
        return f", {low} or more" if low is not None else f", at most {high}" if high is not None else ""

    def within(self, n: int) -> bool:
        return (self.minimum is None or n >= self.minimum) and (self.maximum is None or n <= self.maximum)


def problem(spec: OptionSpec, value: Any) -> str | None:
    """None if `value` is one the option accepts, else the line that says why not."""
    if spec.typespec is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and spec.within(value)
    elif spec.typespec is bool:
        ok = isinstance(value, bool)
    elif spec.choices:
        ok = value in spec.choices
    elif isinstance(value, str):
        ok = _fits(spec, value)
    else:  # a list option
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) and _fits(spec, v) for v in value)
    return None if ok else refusal(spec.name, value, spec.accepts)


def refusal(name: str, value: Any, accepts: str) -> str:
    if isinstance(value, (list, tuple)):  # the first few entries: the line stays one line
        shown = ", ".join(_shown(v) for v in value[:3]) + (f", … ({len(value)} entries)" if len(value) > 3 else "")
    else:
        shown = _shown(value)
    return f"option {name}: got {shown or '(nothing)'}; accepts {accepts}"


def unknown(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f"unknown option {name}" + (f" (did you mean {close[0]}?)" if close else "; `mitmdump --options` lists them")


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    text = _PASSWORD.sub(r"\1:…@", text)  # a URL's password is never repeated, even a refused URL's
    text = text[:200]  # a refused value may be a megabyte long: its start is all that is shown
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)  # seen
    return "'" + text[:80] + ("…" if len(text) > 80 else "") + "'"


def _fits(spec: OptionSpec, value: str) -> bool:
    kind = spec.kind
    if spec.max_length is not None and len(value) > spec.max_length:
        return False
    if kind in (None, "text"):
        return bool(_PRINTABLE_ASCII.match(value))
    if not value.strip():  # empty: the default (an environment variable, a path, nothing)
        if kind == "optional_model":
            return not value
        # but spaces are no path: they would name a file or folder of spaces in the working folder
        return kind not in ("model", "model_map", "limits", "routes") and not (value and kind in ("file", "folder"))
    if kind == "url":
        parts = urlsplit(value.strip())
        return parts.scheme in ("http", "https") and bool(parts.hostname) and _PRINTABLE.match(value) is not None
    if kind == "postgresql_url":
        return urlsplit(value.strip()).scheme in ("postgresql", "postgres")
    if kind in ("file", "folder"):
        return _path_fits(kind, value.strip())
    if kind in ("model", "optional_model"):
        return bool(_MODEL.match(value))
    if kind == "host":
        host = value.strip()
        return bool(_HOST.match(host)) and len(host) <= _HOST_LENGTH \
            and all(len(label) <= _LABEL_LENGTH for label in host.split("."))
    if kind == "model_map":
        alias, sep, target = value.partition("=")
        return bool(sep and alias.strip() and _MODEL.match(target.strip()))
    if kind == "routes":  # the shape; which conditions, scopes and targets: models/routes.parse_routes
        condition, sep, target = value.partition("=")
        return bool(sep and _MODEL.match(condition.strip()) and _MODEL.match(target.strip()))
    if kind == "listen":
        return listen_address(value) is not None
    if kind == "limits":
        model, sep, n = value.rpartition("=")
        return bool(sep and model.strip() and _DIGITS.match(n.strip()) and int(n) > 0 and spec.within(int(n)))
    raise ValueError(f"unknown option kind {kind!r}")


def listen_address(value: str) -> tuple[str, int] | None:
    """`PORT` (loopback: 127.0.0.1), `HOST:PORT` or `[IPv6]:PORT` as (host, port); None if it is neither."""
    host, sep, port = value.strip().rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    if not _DIGITS.match(port) or not 0 < int(port) < 65536 or not host or not _HOST.match(host):
        return None
    return host, int(port)


def _path_fits(kind: str, value: str) -> bool:
    """A file that exists, or a folder that does or can be made (a read-only folder is accepted: the gateway starts
    on one)."""
    if "\x00" in value:  # no file name holds one; pathlib would only say the path does not exist
        return False
    path = Path(value).expanduser()
    try:
        return path.is_file() if kind == "file" else not path.exists() or path.is_dir()
    except OSError:  # a name longer than the file system takes, a parent folder that cannot be searched
        return False
