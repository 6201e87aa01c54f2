"""The pieces request_schema.py compiles a request schema into: one closure per keyword, raising `Invalid` (the
path filled in on the way out) for a value the schema refuses, and nothing at all on the way through a valid one.

Unions are the costly part of a general validator (every option of every message tried). Here options that
all have a required tag (`role`, `type`) are a dictionary lookup (`dispatch`); options only some of which have
one (the Responses API's input items: a message's `type` may be left out) try only the options the value's
tags allow (`by_tags`); options told apart by their JSON type alone are a lookup too (`by_kind`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Check = Callable[[object], None]
TAGS = ("role", "type")  # the properties that tell an object's options apart
ABSENT = object()  # a tag the object does not have
_NAMES = {"object": "an object", "array": "an array", "string": "a string", "integer": "an integer",
          "number": "a number", "boolean": "a boolean", "null": "null"}
_KINDS = {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
          dict: "object"}


class Invalid(Exception):
    """Where a body breaks its schema (the path is filled in on the way out) and what OpenAI would say."""

    def __init__(self, code: str, what: object) -> None:
        super().__init__(code)
        self.code, self._what = code, what  # `what`: text, or an object whose str() is (made only when shown)
        self.path: list[str | int] = []  # innermost first: each level adds its key on the way out

    @property
    def what(self) -> str:
        return str(self._what)

    def param(self) -> str:
        out = ""
        for part in reversed(self.path):
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
        return out


@dataclass(frozen=True)
class NotOneOf:
    """`"x" is not one of the supported values: …`, written only for the error that is shown (a union tries
    options that fail on the way to the one that fits)."""

    value: object
    shown: str

    def __str__(self) -> str:
        return f"{json.dumps(self.value)[:80]} is not one of the supported values: {self.shown}"


def kind(value: object) -> str:
    return _KINDS.get(type(value)) or type(value).__name__


def wrong_type(expected: Sequence[str], value: object) -> Invalid:
    want = " or ".join(_NAMES.get(t, t) for t in expected)
    return Invalid("invalid_type", f"expected {want}, but got {_NAMES.get(kind(value), kind(value))} instead")


def kind_in(value: object, types: Sequence[str]) -> bool:
    k = _KINDS.get(type(value))
    return k in types or (k == "integer" and "number" in types)


def at(key: str | int, e: Invalid) -> Invalid:
    e.path.append(key)
    return e


def of_type(types: list[str]) -> Check:
    py = tuple({"object": dict, "array": list, "string": str, "integer": int, "number": (int, float)}.get(t, ())
               for t in types)
    flat = tuple(t for group in py for t in (group if isinstance(group, tuple) else (group,)))
    null_ok, bool_ok = "null" in types, "boolean" in types

    def check(v: object) -> None:
        if v is None:
            ok = null_ok
        elif v is True or v is False:
            ok = bool_ok
        else:
            ok = isinstance(v, flat) and (type(v) is not float or "number" in types)
        if not ok:
            raise wrong_type(types, v)
    return check


def one_of_values(values: list) -> Check:
    allowed = {(type(x), x) for x in values if not isinstance(x, (dict, list))}
    shown = ", ".join(repr(x) for x in values)

    def check(v: object) -> None:
        try:
            if (type(v), v) in allowed:
                return
        except TypeError:  # a list or an object: never one of the values
            pass
        raise Invalid("invalid_value", NotOneOf(v, shown))
    return check


def known_names(known: list) -> Check:
    """`propertyNames: {"enum": …}`: an object's keys (the Responses request's: OpenAI refuses others)."""
    names = frozenset(known)

    def check(v: object) -> None:
        if isinstance(v, dict):
            for k in v:
                if k not in names:
                    raise at(k, Invalid("unknown_parameter", "unknown parameter"))
    return check


def bounds(node: dict) -> list[Check]:
    steps: list[Check] = []
    low, high = node.get("minimum"), node.get("maximum")
    if low is not None or high is not None:
        wanted = (f"a value from {low} to {high}" if low is not None and high is not None else
                  f"a value of at least {low}" if low is not None else f"a value of at most {high}")

        def number(v: object) -> None:
            if isinstance(v, (int, float)) and not isinstance(v, bool) and (
                    (low is not None and v < low) or (high is not None and v > high)):
                raise Invalid("invalid_value", f"expected {wanted}, but got {v}")
        steps.append(number)
    short, long = node.get("minLength"), node.get("maxLength")
    if short is not None or long is not None:
        def text(v: object) -> None:
            if isinstance(v, str) and ((short is not None and len(v) < short) or
                                       (long is not None and len(v) > long)):
                raise Invalid("invalid_value", f"expected a string of {short or 0} to {long or 'any number of'} "
                                               f"characters, but got {len(v)}")
        steps.append(text)
    return steps


def by_kind(table: dict[str, Check], kinds: list[str]) -> Check:
    def check(v: object) -> None:
        sub = table.get(_KINDS.get(type(v), ""))
        if sub is None:
            raise wrong_type(kinds, v)
        sub(v)
    return check


def first_of(a: Check, b: Check) -> Check:
    """Two options of the same JSON type: the first that takes the value (the second's error otherwise)."""
    def check(v: object) -> None:
        try:
            a(v)
        except Invalid:
            b(v)
    return check


def dispatch(key: str, table: dict, names: str) -> Check:
    """Objects every option of which has the tag `key`, required: the option is the tag's."""
    def check(v: object) -> None:
        if not isinstance(v, dict):
            raise wrong_type(["object"], v)
        if key not in v:
            raise at(key, Invalid("missing_required_parameter", "missing"))
        tag = v[key]
        try:
            sub = table.get((type(tag), tag))
        except TypeError:
            sub = None
        if sub is None:
            raise at(key, Invalid("invalid_value", NotOneOf(tag, names)))
        sub(v)
    return check


@dataclass(frozen=True)
class Option:
    """One option of a union of objects: the values each tag may take (None: any) and whether it is required,
    the properties it knows, its check."""

    tags: dict[str, tuple[frozenset | None, bool]]
    props: frozenset
    check: Check

    def allows(self, v: dict, key: str) -> bool:
        values, required = self.tags.get(key, (None, False))
        tag = v.get(key, ABSENT)
        if tag is ABSENT:
            return not required
        try:
            return values is None or tag in values
        except TypeError:  # a list or an object as the tag: no option takes it
            return False


def by_tags(key: str, options: list[Option], names: str) -> Check:
    """Objects some of whose options have a required tag `key` and some an optional one: only the options the
    value's tag allows are tried, those its other tags allow too first (an assistant message: not the options
    of user messages); when none takes it, the error of the nearest (the one that knows most of the value's
    fields, then got furthest into it)."""
    others = [k for k in TAGS if k != key]
    values = {(type(t), t) for o in options for t in o.tags[key][0] or ()}
    table = {tv: [o for o in options if o.allows({key: tv[1]}, key)] for tv in values}  # tag -> its options
    absent = [o for o in options if o.allows({}, key)]
    anything = [o for o in options if o.tags[key][0] is None]  # options that take any tag

    def check(v: object) -> None:
        if not isinstance(v, dict):
            raise wrong_type(["object"], v)
        if key not in v:
            tries = absent
        else:
            try:
                tries = table.get((type(v[key]), v[key]), anything)
            except TypeError:  # a list or an object as the tag: no option takes it
                tries = []
        if len(tries) > 1:
            tries = sorted(tries, key=lambda o: not all(o.allows(v, k) for k in others))
        if not tries:
            tag = v.get(key, ABSENT)
            raise at(key, Invalid("missing_required_parameter", "missing") if tag is ABSENT else
                     Invalid("invalid_value", NotOneOf(tag, names)))
        failed: list[tuple[tuple, Invalid]] = []
        for o in tries:
            try:
                o.check(v)
                return
            except Invalid as e:
                failed.append(((len(o.props.intersection(v)), len(e.path), e.path[0] not in TAGS), e))
        raise max(failed, key=lambda f: f[0])[1]
    return check
