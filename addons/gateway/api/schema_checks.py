"""The pieces request_schema.py compiles a request schema into: one closure per keyword, raising `Invalid` (the
path filled in on the way out) for a value the schema refuses, and nothing at all on the way through a valid one.

Unions are the costly part of a general validator (every option of every message tried). Here options that
all have a required tag (`role`, `type`) are a dictionary lookup (`dispatch`); options only some of which have
one (the Responses API's input items: a message's `type` may be left out) try only the options the value's
tags allow (`by_tags`); options told apart by their JSON type alone are a lookup too (`by_kind`).

A valid body meets as few calls as its schema allows: an object is one pass over its keys, `type` and allOf parts
included (`fields`); two steps are one closure (`chain`); a field's value its check takes whole by its type (a
string for `{"type": "string"}`, anything for `{}`) is no call.
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


def nothing(value: object) -> None:
    """The check of `{}`: anything goes (a field whose check it is is not called at all)."""


def _taking(check: Check, kinds: Sequence[str]) -> Check:
    """The check, marked with the Python types it takes every value of (`fields` calls it for none of them)."""
    check.takes = frozenset(t for t, k in _KINDS.items()  # type: ignore[attr-defined]
                            if k in kinds or k == "integer" and "number" in kinds)
    return check


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
    return _taking(check, types)


def one_of_values(values: list, types: list[str] | None = None) -> Check:
    """`enum`/`const` after the `type` (`types`): one of the values passes at once, another gets the type's error."""
    allowed = {(type(x), x) for x in values if not isinstance(x, (dict, list)) and (not types or kind_in(x, types))}
    shown = ", ".join(repr(x) for x in values)
    typed = of_type(types) if types else None

    def check(v: object) -> None:
        try:
            if (type(v), v) in allowed:
                return
        except TypeError:  # a list or an object: never one of the values
            pass
        if typed is not None:
            typed(v)
        raise Invalid("invalid_value", NotOneOf(v, shown))
    check.takes = frozenset(x for t, x in allowed if t is str)  # type: ignore[attr-defined]  # strings, not types
    return check


def chain(steps: list[Check]) -> Check:
    """Each step in turn, the first to refuse saying why (a closure calling two, no loop: most have one or two)."""
    steps = [s for s in steps if s is not nothing]
    if len(steps) <= 1:
        return steps[0] if steps else nothing
    first, second = steps[0], chain(steps[1:])

    def both(v: object) -> None:
        first(v)
        second(v)
    return both


def fields(required: list[str], checks: dict[str, Check | None], default: Check | None, not_dict: Check,
           exact: Check | None) -> Check:
    """An object: its `required` keys present, each key's value passing `checks`' check for it (`default` for others;
    None: the key is refused); `not_dict` judges a value not an object (`type`). `exact`, for a schema of parts
    (allOf, propertyNames), checks them in turn: called once one pass found a fault, it raises the error they meet."""
    table = {k: (getattr(c, "takes", ()), c) for k, c in checks.items()}
    other = (getattr(default, "takes", ()), default)

    def check(v: object) -> None:
        if not isinstance(v, dict):
            return not_dict(v)
        try:
            for k in required:
                if k not in v:
                    raise at(k, Invalid("missing_required_parameter", "missing"))
            for k, value in v.items():
                fine, sub = table.get(k, other)
                t = type(value)
                if t in fine or t is str and value in fine:
                    continue  # what the check takes whole (any string; "user" for the role): no call
                if sub is None:
                    raise at(k, Invalid("unknown_parameter", "unknown parameter"))
                if sub is not nothing:
                    try:
                        sub(value)
                    except Invalid as e:
                        raise at(k, e) from None
        except Invalid:
            if exact is not None:
                exact(v)
            raise
    if not required and not checks and default is nothing:
        check.takes = frozenset([dict])  # type: ignore[attr-defined]  # any object (a tool's parameters)
    return check


def items(item: Check, low: int, high: int | None, not_list: Check) -> Check:
    """An array: its length, then each item (`not_list` judges a value that is not an array: the `type`)."""
    def check(v: object) -> None:
        if not isinstance(v, list):
            return not_list(v)
        if len(v) < low or (high is not None and len(v) > high):
            raise Invalid("invalid_value", f"expected an array of {low} to {high or 'any number of'} items, "
                                           f"but got {len(v)}")
        if item is not nothing:
            for i, x in enumerate(v):
                try:
                    item(x)
                except Invalid as e:
                    raise at(i, e) from None
    return check


def by_kind(table: dict[str, Check], kinds: list[str]) -> Check:
    """Options told apart by the value's JSON type (`table`: the check of each; `kinds`: the types named)."""
    def check(v: object) -> None:
        sub = table.get(_KINDS.get(type(v), ""))
        if sub is None:
            raise wrong_type(kinds, v)
        if sub is not nothing:
            sub(v)
    check.by_kind = table  # type: ignore[attr-defined]  # a union inside a union by kind: one lookup
    return _taking(check, [k for k, sub in table.items() if sub is nothing])


def first_of(a: Check, b: Check) -> Check:
    """Two options of the same JSON type: the first that takes the value (the second's error otherwise)."""
    if a is nothing or b is nothing:
        return nothing  # one takes any value of the type

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


@dataclass(frozen=True, eq=False)  # hashed as itself: by_tags keeps sets of options
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
    (other,) = [k for k in TAGS if k != key]
    values = {(type(t), t) for o in options for t in o.tags[key][0] or ()}
    table = {tv: [o for o in options if o.allows({key: tv[1]}, key)] for tv in values}  # tag -> its options
    absent = [o for o in options if o.allows({}, key)]
    anything = [o for o in options if o.tags[key][0] is None]  # options that take any tag
    # the options tried first, by the other tag's value (`unnamed`: a value no option names): sets, no call to sort
    unnamed = object()
    fits = {t: frozenset(o for o in options if o.allows({other: t}, other))
            for t in [ABSENT, unnamed, *(t for o in options for t in o.tags[other][0] or ())]}

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
            try:
                ok = fits.get(v.get(other, ABSENT), fits[unnamed])
            except TypeError:  # a list or an object as the tag: only the options that take any value fit
                ok = fits[unnamed]
            tries = [o for o in tries if o in ok] + [o for o in tries if o not in ok]
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
