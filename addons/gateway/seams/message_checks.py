"""mitmproxy's type check of a message's fields without an exception for every field that is None.

Why: every `http.Request` and `http.Response` mitmproxy makes (each request parsed, each answer the gateway
sets) runs `MessageData.__post_init__`, which checks each field with `typecheck.check_option_type`. That
function formats its TypeError before it knows whether it will raise, and checks `bytes | None` by trying
`bytes` first: each field that is None (a request's trailers and end time, a response's too) raises and
catches a TypeError, whose traceback holds the frame that holds it — a reference cycle left for the cyclic
collector. A message cost 43 µs to make here, 34 of them in the check, and left 27 objects of cyclic garbage;
the collector's passes over them were most of its ~70 µs a request under load (docs/performance.md).

`install` gives `MessageData` a `__post_init__` that checks each field with one `isinstance` against the
types `check_option_type` accepts for it (a union's members; an int where a float is due) and hands any
field that fails it, or whose type is not a plain class or a union of them, to `check_option_type` itself:
the same fields accepted, the same TypeError raised for the others. On the class, as mitmproxy's check is
(every message of the process), only in a process mitmproxy's `run` started (not a test's master), and only
over the code it was written against: mitmproxy 12.2.3's `MessageData.__post_init__` and `check_option_type`.
And only while every addon with hooks on flows or connections is mitmproxy's or the gateway's: an addon of
another's loaded beside the gateway puts mitmproxy's own check back until it leaves (addon_chain.py).

What mitmproxy change would remove it: `check_option_type` building its TypeError only when it raises, and
checking a union without raising for its members (an `isinstance` against the members' tuple).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from mitmproxy import http
from mitmproxy.utils import typecheck

from . import addon_chain
from .fingerprint import WrittenAgainst

WRITTEN = WrittenAgainst(
    seam="message fields checked without an exception each",
    loses="each message mitmproxy makes raises and catches a TypeError per field that is None (about 30 µs, and "
          "garbage for the cyclic collector)",
    code=(("mitmproxy.http:MessageData.__post_init__", "f65088e210cd9cc1"),
          ("mitmproxy.utils.typecheck:check_option_type", "b60e47c7091fa795"), *addon_chain.CODE))

_original = http.MessageData.__dict__.get("__post_init__")
_following = False  # installed: the check follows the chain (the gateway's while it is ours)
_checks: dict[type, tuple[tuple[str, tuple[type, ...] | None, Any], ...]] = {}  # a message class -> its fields'


def accepted(typeinfo: Any) -> tuple[type, ...] | None:
    """The classes `check_option_type` accepts an instance of for `typeinfo` (an int for a float), or None when
    it is neither a plain class nor a union of plain classes, or is Any (left to `check_option_type`)."""
    origin = typing.get_origin(typeinfo)
    if origin is typing.Union or origin is types.UnionType:
        members = typing.get_args(typeinfo)
    elif origin is None and isinstance(typeinfo, type):
        members = (typeinfo,)
    else:
        return None
    # Any is a class `isinstance` refuses (check_option_type accepts anything for it): left to that check
    if not all(isinstance(m, type) and typing.get_origin(m) is None and m is not typing.Any for m in members):
        return None
    return (*members, int) if float in members else members


def _fields(cls: type) -> tuple[tuple[str, tuple[type, ...] | None, Any], ...]:
    checks = _checks.get(cls)
    if checks is None:
        checks = _checks[cls] = tuple((f.name, accepted(f.type), f.type) for f in dataclasses.fields(cls))
    return checks


def _post_init(self: http.MessageData) -> None:
    """MessageData.__post_init__ (mitmproxy 12.2.3), with a field's check_option_type run only when the
    field's value is not an instance of what it accepts."""
    for name, ok, typeinfo in _fields(type(self)):
        value = getattr(self, name)
        if ok is None or not isinstance(value, ok):
            typecheck.check_option_type(name, value, typeinfo)


def install(master: object) -> bool:
    """Give MessageData the check above, in a process mitmproxy's `run` started; False when it is not one, when
    MessageData's check is not mitmproxy's own (another addon's, or this one already), or when that is not the
    code this was written against: left as it is."""
    if not type(master).__module__.startswith("mitmproxy.tools."):
        return False
    if _original is None or http.MessageData.__dict__.get("__post_init__") is not _original:
        return False
    if not WRITTEN.fits():
        return False
    global _following
    _following = True
    watch = addon_chain.watch(master.addons)  # type: ignore[attr-defined]
    watch.follow("message checks", _follow)
    _follow(watch.ours)
    return True


def _follow(ours: bool) -> None:
    if _following:
        http.MessageData.__post_init__ = _post_init if ours else _original  # type: ignore[method-assign,assignment]


def uninstall() -> None:
    """mitmproxy's own check back (tests)."""
    global _following
    _following = False
    if _original is not None:
        http.MessageData.__post_init__ = _original  # type: ignore[method-assign]
