"""Chat and legacy-completions bodies checked against OpenAI's published request schemas, as OpenAI checks them:
a body the spec refuses gets a 400 `invalid_request_error` whose `param` names the field
(`messages[2].content`, `stream_options`, `temperature`), never an answer that pretends.

The schemas (request_schemas.json, written by scripts/extract_schemas.py from the spec) are compiled once, when
this module is imported, into plain Python closures: no per-request compilation, and no exceptions on the
way through a valid body. A `oneOf`/`anyOf` whose options are objects told apart by their `role` or `type`
is a dictionary lookup, so a 600-message conversation costs one check per message (a general JSON Schema
validator tries every option of every message: ~100 ms for such a body). Where the gateway takes more than
the spec, the JSON says so (images in a `tool` message); and a `null` top-level field counts as absent,
because clients send them for "not set" (`"tools": null`) and the gateway always took them.

Only the subset of JSON Schema the spec's request bodies use is read: `$ref`, `type`, `enum`, `const`,
`properties`, `required`, `additionalProperties: false`, `items`, `anyOf`/`oneOf` (as any-of), `allOf`, and
the size and range keywords; `pattern` and `format` are not checked (what the model gets is text anyway).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ..errors import GatewayError

Check = Callable[[object], None]
_PREFIX = "#/components/schemas/"
_TAGS = ("role", "type")  # the properties that tell an object's options apart
_NAMES = {"object": "an object", "array": "an array", "string": "a string", "integer": "an integer",
          "number": "a number", "boolean": "a boolean", "null": "null"}


class Invalid(Exception):
    """Where a body breaks its schema (the path is filled in on the way out) and what OpenAI would say."""

    def __init__(self, code: str, what: str) -> None:
        super().__init__(what)
        self.code, self.what = code, what
        self.path: list[str | int] = []  # innermost first: each level adds its key on the way out

    def param(self) -> str:
        out = ""
        for part in reversed(self.path):
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
        return out


_KINDS = {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
          dict: "object"}


def _kind(value: object) -> str:
    return _KINDS.get(type(value)) or type(value).__name__


def _wrong_type(expected: list[str], value: object) -> Invalid:
    want = " or ".join(_NAMES.get(t, t) for t in expected)
    return Invalid("invalid_type", f"expected {want}, but got {_NAMES.get(_kind(value), _kind(value))} instead")


class Compiler:
    """One schema document's named schemas as checks (each compiled once; `$ref`s resolved late, so
    recursive schemas work)."""

    def __init__(self, doc: dict) -> None:
        self.schemas: dict[str, dict] = doc["components"]["schemas"]
        self.checks: dict[str, Check] = {}
        self.compiling: set[str] = set()

    def named(self, name: str) -> Check:
        """The check of a named schema, compiled once and shared by every `$ref` to it (a `$ref` met while
        its own schema compiles, a recursion, calls it through the table instead)."""
        if name in self.compiling:
            return lambda v: self.checks[name](v)
        if name not in self.checks:
            self.compiling.add(name)
            self.checks[name] = self.compile(self.schemas[name])
            self.compiling.discard(name)
        return self.checks[name]

    def resolve(self, node: dict) -> dict:
        while "$ref" in node:
            node = self.schemas[node["$ref"][len(_PREFIX):]]
        return node

    def compile(self, node: object) -> Check:
        if not isinstance(node, dict) or not node:
            return lambda v: None
        if "$ref" in node:
            return self.named(node["$ref"][len(_PREFIX):])
        steps: list[Check] = []
        if "type" in node:
            steps.append(self._type(node["type"] if isinstance(node["type"], list) else [node["type"]]))
        if "enum" in node or "const" in node:
            steps.append(self._enum(node["enum"] if "enum" in node else [node["const"]]))
        if "anyOf" in node or "oneOf" in node:
            steps.append(self._options(node.get("anyOf") or node.get("oneOf") or []))
        steps += [self.compile(part) for part in node.get("allOf") or []]
        if "properties" in node or "required" in node or node.get("additionalProperties") is False:
            steps.append(self._object(node))
        if "items" in node or "minItems" in node or "maxItems" in node:
            steps.append(self._array(node))
        steps += self._bounds(node)
        if len(steps) == 1:
            return steps[0]

        def check(v: object) -> None:
            for step in steps:
                step(v)
        return check

    @staticmethod
    def _type(types: list[str]) -> Check:
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
                raise _wrong_type(types, v)
        return check

    @staticmethod
    def _enum(values: list) -> Check:
        allowed = {(type(x), x) for x in values if not isinstance(x, (dict, list))}
        shown = ", ".join(repr(x) for x in values)

        def check(v: object) -> None:
            try:
                if (type(v), v) in allowed:
                    return
            except TypeError:  # a list or an object: never one of the values
                pass
            raise Invalid("invalid_value", f"{json.dumps(v)[:80]} is not one of the supported values: {shown}")
        return check

    def _tag_of(self, option: dict, key: str) -> list | None:
        option = self.resolve(option)
        prop = (option.get("properties") or {}).get(key)
        if key not in (option.get("required") or []) or not isinstance(prop, dict):
            return None
        return [prop["const"]] if "const" in prop else prop.get("enum")

    def _options(self, options: list) -> Check:
        """anyOf/oneOf: by the tag when every option is an object with one, else the first option that takes
        the value (the error of the option of the value's own type when none does)."""
        for key in _TAGS:
            tags = [self._tag_of(o, key) for o in options]
            if all(tags):
                table = {(type(t), t): self.compile(o) for ts, o in zip(tags, options) for t in ts or []}
                names = ", ".join(repr(t) for ts in tags for t in ts or [])
                return self._dispatch(key, table, names)
        checks = [(self.compile(o), self._types_of(o)) for o in options]
        kinds = sorted({t for _, types in checks for t in types or []})
        untyped = any(types is None for _, types in checks)
        by_kind: dict[str, Check] = {}
        for c, types in checks:
            for t in (types or []) + (["integer"] if types and "number" in types else []):
                by_kind[t] = c if t not in by_kind else _first_of(by_kind[t], c)
        if not untyped:  # told apart by the value's JSON type alone: one lookup (a string or an array of parts)
            return self._by_kind(by_kind, kinds)

        def check(v: object) -> None:
            fitting = []
            for c, types in checks:
                if types is not None and not _kind_in(v, types):
                    continue  # not even the option's type: not worth an attempt
                try:
                    c(v)
                    return
                except Invalid as e:
                    fitting.append(e)
            if len(fitting) == 1:
                raise fitting[0]
            raise (_wrong_type(kinds, v) if not fitting and not untyped else
                   Invalid("invalid_value", "it matches none of the forms this field takes"))
        return check

    @staticmethod
    def _by_kind(table: dict[str, Check], kinds: list[str]) -> Check:
        def check(v: object) -> None:
            sub = table.get(_KINDS.get(type(v), ""))
            if sub is None:
                raise _wrong_type(kinds, v)
            sub(v)
        return check

    def _types_of(self, option: dict) -> list[str] | None:
        """The JSON types an option can take (None: any, as far as this can tell)."""
        option = self.resolve(option)
        t = option.get("type")
        if t is None and ("enum" in option or "const" in option):
            return sorted({_kind(x) for x in option.get("enum") or [option.get("const")]})
        if t is None and (option.get("anyOf") or option.get("oneOf")):
            inner = [self._types_of(o) for o in option.get("anyOf") or option.get("oneOf") or []]
            return None if any(i is None for i in inner) else sorted({k for i in inner for k in i or []})
        return t if isinstance(t, list) else [t] if isinstance(t, str) else None

    @staticmethod
    def _dispatch(key: str, table: dict, names: str) -> Check:
        def check(v: object) -> None:
            if not isinstance(v, dict):
                raise _wrong_type(["object"], v)
            if key not in v:
                e = Invalid("missing_required_parameter", "missing")
                e.path.append(key)
                raise e
            tag = v[key]
            try:
                sub = table.get((type(tag), tag))
            except TypeError:
                sub = None
            if sub is None:
                e = Invalid("invalid_value", f"{json.dumps(tag)[:80]} is not one of the supported values: {names}")
                e.path.append(key)
                raise e
            sub(v)
        return check

    def _object(self, node: dict) -> Check:
        props = {k: self.compile(s) for k, s in (node.get("properties") or {}).items()}
        required = list(node.get("required") or [])
        closed = node.get("additionalProperties") is False

        def check(v: object) -> None:
            if not isinstance(v, dict):
                return  # `type` says what it must be
            for k in required:
                if k not in v:
                    e = Invalid("missing_required_parameter", "missing")
                    e.path.append(k)
                    raise e
            for k, value in v.items():
                sub = props.get(k)
                if sub is None:
                    if closed:
                        e = Invalid("unknown_parameter", "unknown parameter")
                        e.path.append(k)
                        raise e
                    continue
                try:
                    sub(value)
                except Invalid as e:
                    e.path.append(k)
                    raise
        return check

    def _array(self, node: dict) -> Check:
        item = self.compile(node.get("items"))
        low, high = node.get("minItems", 0), node.get("maxItems")

        def check(v: object) -> None:
            if not isinstance(v, list):
                return
            if len(v) < low or (high is not None and len(v) > high):
                raise Invalid("invalid_value", f"expected an array of {low} to {high or 'any number of'} items, "
                                               f"but got {len(v)}")
            for i, x in enumerate(v):
                try:
                    item(x)
                except Invalid as e:
                    e.path.append(i)
                    raise
        return check

    @staticmethod
    def _bounds(node: dict) -> list[Check]:
        steps: list[Check] = []
        low, high = node.get("minimum"), node.get("maximum")
        if low is not None or high is not None:
            def number(v: object) -> None:
                if isinstance(v, (int, float)) and not isinstance(v, bool) and (
                        (low is not None and v < low) or (high is not None and v > high)):
                    raise Invalid("invalid_value", f"expected a value from {low} to {high}, but got {v}")
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


def _first_of(a: Check, b: Check) -> Check:
    """Two options of the same JSON type: the first that takes the value (the second's error otherwise)."""
    def check(v: object) -> None:
        try:
            a(v)
        except Invalid:
            b(v)
    return check


def _kind_in(value: object, types: list[str]) -> bool:
    kind = _KINDS.get(type(value))
    return kind in types or (kind == "integer" and "number" in types)


_DOC = json.loads((Path(__file__).parent / "request_schemas.json").read_text())
_COMPILER = Compiler(_DOC)
CHAT = _COMPILER.named("CreateChatCompletionRequest")
COMPLETIONS = _COMPILER.named("CreateCompletionRequest")


def check(schema: Check, body: dict) -> dict:
    """`body` when the schema takes it (a top-level null counting as absent); else OpenAI's 400 naming the
    field."""
    judged = {k: v for k, v in body.items() if v is not None} if None in body.values() else body
    try:
        schema(judged)
    except Invalid as e:
        param = e.param()
        if e.code == "missing_required_parameter":
            message = f"Missing required parameter: '{param}'."
        elif e.code == "unknown_parameter":
            message = f"Unknown parameter: '{param}'."
        elif e.code == "invalid_type":
            message = f"Invalid type for '{param}': {e.what}."
        else:
            message = f"Invalid value for '{param}': {e.what}."
        raise GatewayError(400, message, param=param or None, code=e.code) from None
    return body
