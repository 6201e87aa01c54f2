"""Chat, legacy-completions, Responses and embeddings bodies checked against OpenAI's published request schemas,
as OpenAI checks them: a body the spec refuses gets a 400 `invalid_request_error` whose `param` names the field
(`messages[2].content`, `input[3].role`, `temperature`), never an answer that pretends.

The schemas (request_schemas.json, written by scripts/extract_schemas.py from the spec) are compiled once, when
this module is imported, into plain Python closures (schema_checks.py): no per-request compilation, and no
exceptions on the way through a valid body. A `oneOf`/`anyOf` whose options are objects told apart by their
`role` or `type` is a dictionary lookup, so a 600-message conversation costs one check per message (a general
JSON Schema validator tries every option of every message: ~100 ms for such a body). Where the gateway takes
more than the spec, the JSON says so (images in a `tool` message; Responses items a client gives back without
their `id`; the list is in extract_schemas.py); and a `null` top-level field counts as absent, because clients
send them for "not set" (`"tools": null`) and the gateway always took them.

Only the subset of JSON Schema the spec's request bodies use is read: `$ref`, `type`, `enum`, `const`,
`properties`, `required`, `additionalProperties` (`false` or a schema), `propertyNames` (an `enum`), `items`,
`anyOf`/`oneOf` (as any-of), `allOf`, and the size and range keywords; `pattern` and `format` are not checked
(what the model gets is text anyway).

A function's `parameters` is only "an object" to the spec; that it is a JSON Schema is function_schema.py's.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import GatewayError
from .schema_checks import (TAGS, Check, Invalid, Option, by_kind, by_tags, chain, dispatch, fields, first_of,
                            items, kind, kind_in, nothing, of_type, one_of_values, wrong_type)

_PREFIX = "#/components/schemas/"
_OBJECT = {"properties", "required", "additionalProperties", "propertyNames", "allOf"}  # an object schema's words
_ARRAY = {"items", "minItems", "maxItems"}
_READ = {"type", "enum", "const", "anyOf", "oneOf", "minimum", "maximum", "minLength", "maxLength", *_OBJECT, *_ARRAY}


def _listed(t: object) -> list:
    return t if isinstance(t, list) else [t]


def _names(node: dict) -> frozenset | None:
    """propertyNames' `enum`: the only keys the object may have (None: any)."""
    names = (node.get("propertyNames") or {}).get("enum")
    return frozenset(names) if isinstance(names, list) else None


def _bounds(node: dict) -> list[Check]:
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


def _field(known: list[tuple], key: str | None) -> Check | None:
    """What a key's value must pass by every part (None: a part refuses the key; `key` None: a key none names)."""
    subs = []
    for props, names, others in known:
        if names is not None and key not in names or key not in props and others is False:
            return None
        subs.append(props[key] if key in props else others)
    return chain(subs)


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
            return nothing
        if "$ref" in node:
            return self.named(node["$ref"][len(_PREFIX):])
        words, types = node.keys() & _READ, _listed(node["type"]) if "type" in node else None
        parts = self._parts(node, frozenset()) if words & _OBJECT else None
        if parts is not None:  # an object: one pass over its keys, its `type` and every allOf part's words with it
            if len(parts) == 1 and _names(node) is None:  # its errors already the ones the steps would raise
                return self._fields(parts, of_type(types) if types else nothing, None)
            exact = self._steps(node)
            return self._fields(parts, exact, exact)
        if words <= {"type", "enum", "const"} and ("enum" in node or "const" in node):
            return one_of_values(node["enum"] if "enum" in node else [node["const"]], types)
        if words <= {"type", *_ARRAY} and words & _ARRAY and "array" in (types or ["array"]):
            return self._array(node, of_type(types) if types else nothing)
        return self._steps(node)

    def _steps(self, node: dict) -> Check:
        """The schema's words one after another, in the order their errors are met."""
        steps: list[Check] = [of_type(_listed(node["type"]))] if "type" in node else []
        if "enum" in node or "const" in node:
            steps.append(one_of_values(node["enum"] if "enum" in node else [node["const"]]))
        if "anyOf" in node or "oneOf" in node:
            steps.append(self._options(node.get("anyOf") or node.get("oneOf") or []))
        steps += [self.compile(part) for part in node.get("allOf") or []]
        if _names(node) is not None:  # the keys refused in their order, before the object's fields
            steps.append(self._fields([{"propertyNames": node["propertyNames"]}], nothing, None))
        if "properties" in node or "required" in node or "additionalProperties" in node:
            steps.append(self._fields([node], nothing, None))  # (keys propertyNames refuses were refused above)
        if "items" in node or "minItems" in node or "maxItems" in node:
            steps.append(self._array(node, nothing))
        return chain(steps + _bounds(node))

    def _options(self, options: list) -> Check:
        """anyOf/oneOf: by the tag when every option is an object with one (or, when only some have one, among
        the options the tags allow), else the first option that takes the value (the error of the option of
        the value's own type when none does)."""
        for key in TAGS:
            tags = [self._tag_of(o, key) for o in options]
            if all(tags):
                tagged_table = {(type(t), t): self.compile(o) for ts, o in zip(tags, options) for t in ts or []}
                return dispatch(key, tagged_table, ", ".join(repr(t) for ts in tags for t in ts or []))
        flat = self._flatten(options)
        if all(self._types_of(o) == ["object"] for o in flat):
            tagged = {key: sum(1 for o in flat if self._tag_of(o, key)) for key in TAGS}
            key = max(TAGS, key=lambda k: tagged[k])  # the tag most options require
            if tagged[key]:
                return self._by_tags(key, flat)
        checks = [(self._option(o), self._types_of(o)) for o in options]
        kinds = sorted({t for _, types in checks for t in types or []})
        untyped = any(types is None for _, types in checks)
        table: dict[str, Check] = {}
        for c, types in checks:
            for t in (types or []) + (["integer"] if types and "number" in types else []):
                sub = getattr(c, "by_kind", {}).get(t, c)  # an option itself a union by kind: its own option
                table[t] = sub if t not in table else first_of(table[t], sub)
        if not untyped:  # told apart by the value's JSON type alone: one lookup (a string or an array of parts)
            return by_kind(table, kinds)

        def check(v: object) -> None:
            fitting = []
            for c, types in checks:
                if types is not None and not kind_in(v, types):
                    continue  # not even the option's type: not worth an attempt
                try:
                    c(v)
                    return
                except Invalid as e:
                    fitting.append(e)
            if len(fitting) == 1:
                raise fitting[0]
            raise (wrong_type(kinds, v) if not fitting and not untyped else
                   Invalid("invalid_value", "it matches none of the forms this field takes"))
        return check

    def _option(self, option: object) -> Check:
        """An option's check for a value known to be of its type (looked up by it): no `type` step of its own."""
        if isinstance(option, dict) and "type" in option and "$ref" not in option:
            return self.compile({k: v for k, v in option.items() if k != "type"})
        return self.compile(option)

    def _tag_of(self, option: dict, key: str) -> list | None:
        """The values of an option's tag when the tag is required (None otherwise)."""
        option = self.resolve(option)
        prop = (option.get("properties") or {}).get(key)
        if key not in (option.get("required") or []) or not isinstance(prop, dict):
            return None
        prop = self.resolve(prop)
        return [prop["const"]] if "const" in prop else prop.get("enum")

    def _flatten(self, options: list) -> list[dict]:
        """The options, an option that is itself only a union (the Responses API's `Item`) replaced by its own."""
        out: list[dict] = []
        for o in options:
            node = self.resolve(o) if isinstance(o, dict) else {}
            inner = node.get("oneOf") or node.get("anyOf")
            if inner and set(node) <= {"oneOf", "anyOf", "type"} and node.get("type", "object") == "object":
                out += self._flatten(inner)
            elif isinstance(o, dict):
                out.append(o)
        return out

    def _by_tags(self, key: str, options: list[dict]) -> Check:
        made: list[Option] = []
        names: list[str] = []
        for o in options:
            tags = {k: self._tag_values(o, k) for k in TAGS}
            made.append(Option(tags, frozenset(self.resolve(o).get("properties") or ()), self.compile(o)))
            names += [repr(t) for t in tags[key][0] or () if t is not None and repr(t) not in names]
        return by_tags(key, made, ", ".join(names))

    def _tag_values(self, option: dict, key: str) -> tuple[frozenset | None, bool]:
        """The values an option's tag may take (None: any) and whether the tag is required."""
        option = self.resolve(option)
        prop = (option.get("properties") or {}).get(key)
        required = key in (option.get("required") or [])
        if not isinstance(prop, dict):
            return None, required
        prop = self.resolve(prop)
        values: list = []
        for part in [prop, *map(self.resolve, prop.get("anyOf") or prop.get("oneOf") or [])]:
            if "const" in part:
                values.append(part["const"])
            values += part.get("enum") or []
            if part.get("type") == "null":
                values.append(None)
        return (frozenset(values) if values else None), required

    def _types_of(self, option: dict) -> list[str] | None:
        """The JSON types an option can take (None: any, as far as this can tell)."""
        option = self.resolve(option)
        t = option.get("type")
        if t is None and ("enum" in option or "const" in option):
            return sorted({kind(x) for x in option.get("enum") or [option.get("const")]})
        if t is None and (option.get("anyOf") or option.get("oneOf")):
            inner = [self._types_of(o) for o in option.get("anyOf") or option.get("oneOf") or []]
            return None if any(i is None for i in inner) else sorted({k for i in inner for k in i or []})
        return t if isinstance(t, list) else [t] if isinstance(t, str) else None

    def _parts(self, node: dict, seen: frozenset) -> list[dict] | None:
        """The object schemas `node` is the conjunction of (itself, then its allOf's parts, `$ref`s followed), or
        None when it has other words, a `type` other than an object, or a recursion."""
        if not node.keys() & _READ <= _OBJECT | {"type"} or "object" not in _listed(node.get("type", "object")):
            return None
        parts = [node]
        for part in node.get("allOf") or []:
            while isinstance(part, dict) and "$ref" in part:
                name = part["$ref"][len(_PREFIX):]
                if name in seen or name in self.compiling:
                    return None
                seen, part = seen | {name}, self.schemas[name]
            inner = self._parts(part, seen) if isinstance(part, dict) else None
            if inner is None:
                return None
            parts += inner
        return parts

    def _fields(self, parts: list[dict], not_dict: Check, exact: Check | None) -> Check:
        """The parts' fields as one check: a property several parts have passes each one's check; a key a part
        does not name, that part's additionalProperties (refused by `false`, or by a propertyNames without it)."""
        known = [({k: self.compile(s) for k, s in (p.get("properties") or {}).items()}, _names(p),
                  p.get("additionalProperties") is not False and self.compile(p.get("additionalProperties")))
                 for p in parts]  # additionalProperties: False (`false`), or its check (`nothing` for none)
        keys = dict.fromkeys(k for props, names, _ in known for k in [*props, *(names or ())])
        table = {k: _field(known, k) for k in keys}
        required = list(dict.fromkeys(k for p in parts for k in p.get("required") or []))
        return fields(required, table, _field(known, None), not_dict, exact)

    def _array(self, node: dict, typed: Check) -> Check:
        return items(self.compile(node.get("items")), node.get("minItems", 0), node.get("maxItems"), typed)


_DOC = json.loads((Path(__file__).parent / "request_schemas.json").read_text())
_COMPILER = Compiler(_DOC)
CHAT = _COMPILER.named("CreateChatCompletionRequest")
COMPLETIONS = _COMPILER.named("CreateCompletionRequest")
RESPONSES = _COMPILER.named("CreateResponseBody")  # the spec's CreateResponse, fields it does not define refused
EMBEDDINGS = _COMPILER.named("CreateEmbeddingRequest")  # the spec's own `additionalProperties: false`


def check(schema: Check, body: dict) -> dict:
    """`body` when the schema takes it (a top-level null counting as absent); else OpenAI's 400 naming the
    field."""
    judged = {k: v for k, v in body.items() if v is not None} if None in body.values() else body
    try:
        schema(judged)
    except Invalid as e:
        param, what = e.param(), e.what
        message = {"missing_required_parameter": f"Missing required parameter: '{param}'.",
                   "unknown_parameter": f"Unknown parameter: '{param}'.",
                   "invalid_type": f"Invalid type for '{param}': {what}.",
                   }.get(e.code, f"Invalid value for '{param}': {what}.")
        raise GatewayError(400, message, param=param or None, code=e.code) from None
    return body
