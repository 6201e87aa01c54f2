"""Hypothesis strategies from JSON Schemas (the request schemas of OpenAI's spec, tests/data/openai_schemas.json,
and the Messages request schema, tests/data/anthropic_messages_request.json): bodies that follow the schema,
and bodies with one field broken. hypothesis-jsonschema does the first, but not with the hypothesis this
suite runs (it drives hypothesis internals that changed), so this is the subset of JSON Schema the specs use.

What is generated is a candidate, not a promise: `$ref`s deeper than `MAX_DEPTH` end early, `pattern`s and
`oneOf`'s exclusivity are not honoured, and a mutation may happen to keep a body valid. The fuzzer asks a
validator (`is_valid`) what each body is before it judges the answer.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import jsonschema
from hypothesis import strategies as st
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DATA = Path(__file__).parents[1] / "data"
MAX_DEPTH = 6  # nested schemas deeper than this end at their simplest form (Responses input items recurse)
OPTIONAL_MAX = 5  # optional properties drawn per object: enough to combine fields, few enough to read

# Text with what clients really send: ASCII, other scripts, emoji, and the lone surrogates JavaScript's
# JSON.stringify writes for a string cut inside an emoji (sent escaped, "\ud83d": valid JSON).
TEXT = st.text(st.characters(codec="utf-8") | st.sampled_from(["\ud83d", "\ude00", "😀", "é", "\n", "\x00"]),
               max_size=12)
# Values of every JSON type, for the field a mutation breaks.
WRONG = st.sampled_from([None, True, False, 0, 5, -1, 1.5, 10**12, "", "x", "\ud83d", [], [{}], ["x"], [1, 2],
                         {}, {"x": 1}, {"type": "x"}])


def _load_openai() -> dict:
    return json.loads((DATA / "openai_schemas.json").read_text())


def _load_anthropic() -> dict:
    return json.loads((DATA / "anthropic_messages_request.json").read_text())


def _load_gateway() -> dict:
    """The request schemas the gateway checks bodies with (the spec's, with its documented widenings), a `oneOf`
    read as `anyOf` as the gateway reads it (the spec's Responses input items overlap: a user message with
    `input_text` parts is both an EasyInputMessage and an InputMessage)."""
    text = (DATA.parent.parent / "addons" / "gateway" / "api" / "request_schemas.json").read_text()
    return json.loads(text.replace('"oneOf":', '"anyOf":'))


@functools.cache
def document(kind: str) -> dict:
    return {"openai": _load_openai, "anthropic": _load_anthropic, "gateway": _load_gateway}[kind]()


class Schemas:
    """One schema document: strategies for its named schemas and a validator for each."""

    def __init__(self, kind: str) -> None:
        self.doc = document(kind)
        self.uri = f"urn:{kind}-request-schemas"
        self.registry = Registry().with_resource(self.uri, Resource(self.doc, specification=DRAFT202012))

    def resolve(self, node: dict) -> dict:
        ref = node.get("$ref")
        while isinstance(ref, str):
            name = ref.rsplit("/", 1)[1]
            merged = {k: v for k, v in node.items() if k != "$ref"}
            node = {**self.doc["components"]["schemas"][name], **merged}
            ref = node.get("$ref") if "$ref" in self.doc["components"]["schemas"][name] else None
        return node

    @functools.cache  # noqa: B019 - one instance per document, kept for the session
    def validator(self, name: str) -> jsonschema.Draft202012Validator:
        return jsonschema.Draft202012Validator({"$ref": f"{self.uri}#/components/schemas/{name}"},
                                               registry=self.registry)

    def errors(self, name: str, body: object) -> list[jsonschema.ValidationError]:
        return list(self.validator(name).iter_errors(body))

    def properties(self, name: str) -> dict:
        return self._object_parts(self.resolve({"$ref": f"#/components/schemas/{name}"}))[0]

    def _object_parts(self, schema: dict) -> tuple[dict, list[str]]:
        """An object schema's properties and required names, allOf's parts merged."""
        props, required = dict(schema.get("properties") or {}), list(schema.get("required") or [])
        for part in schema.get("allOf") or []:
            p, r = self._object_parts(self.resolve(part))
            props.update(p)
            required += r
        return props, required

    def valid(self, name: str, overrides: dict[str, st.SearchStrategy] | None = None,
              defaults: dict[str, st.SearchStrategy] | None = None) -> st.SearchStrategy:
        """Bodies of schema `name`; a field in `overrides` that the body has is drawn from its strategy instead
        (a model name the gateway knows, rather than any string, so that the body goes on past the model map);
        a field in `defaults` that it lacks is added (what the spec leaves optional but an answer needs)."""
        base = self.strategy({"$ref": f"#/components/schemas/{name}"}, 0)
        if not overrides and not defaults:
            return base

        @st.composite
        def build(draw):
            body = draw(base)
            for key, strategy in (overrides or {}).items():
                if key in body:
                    body[key] = draw(strategy)
            for key, strategy in (defaults or {}).items():
                if key not in body:
                    body[key] = draw(strategy)
            return body

        return build()

    def strategy(self, schema: object, depth: int) -> st.SearchStrategy:
        if schema is True or not isinstance(schema, dict) or not schema:
            return st.just("x") if depth > MAX_DEPTH else TEXT
        schema = self.resolve(schema)
        if "const" in schema:
            return st.just(schema["const"])
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        options = schema.get("anyOf") or schema.get("oneOf")
        if options:
            if depth > MAX_DEPTH:  # the simplest option: a scalar if there is one
                options = sorted(options, key=lambda o: len(json.dumps(self.resolve(o))))[:1]
            return st.one_of([self.strategy(o, depth + 1) for o in options])
        kind = schema.get("type")
        if isinstance(kind, list):
            return st.one_of([self.strategy({**schema, "type": k}, depth) for k in kind])
        if kind == "object" or "properties" in schema or "allOf" in schema:
            return self._object(schema, depth)
        if kind == "array":
            low = schema.get("minItems", 0)
            items = self.resolve(schema.get("items") or {})
            # Lists of scalars (strings, token ids) go past 10 now and then: where a batch limit lives.
            longer = items.get("type") in ("string", "integer") and "enum" not in items
            high = min(schema.get("maxItems", 16), low + (16 if longer else 3))
            if depth > MAX_DEPTH:
                high = low
            return st.lists(self.strategy(schema.get("items", {}), depth + 1), min_size=low, max_size=high)
        if kind == "string":
            if "pattern" in schema:  # a name the API restricts (Anthropic's tool names): strings that match it
                return st.from_regex(schema["pattern"], fullmatch=True)
            return TEXT if not schema.get("minLength") else TEXT.filter(lambda s: len(s) >= schema["minLength"])
        if kind == "integer":
            return st.integers(schema.get("minimum", -(2**31)), schema.get("maximum", 2**31))
        if kind == "number":
            return st.floats(schema.get("minimum", -1e6), schema.get("maximum", 1e6), allow_nan=False)
        if kind == "boolean":
            return st.booleans()
        if kind == "null":
            return st.none()
        return TEXT

    def _object(self, schema: dict, depth: int) -> st.SearchStrategy:
        props, required = self._object_parts(schema)
        optional = [k for k in props if k not in required]
        fields = {k: self.strategy(props[k], depth + 1) for k in dict.fromkeys(required) if k in props}
        # An optional field's strategy is built when first drawn, then kept: building one is most of a draw's CPU
        # (hypothesis inspects each composite's function as it is made), and the same field gives the same one.
        built: dict[str, st.SearchStrategy] = {}

        @st.composite
        def build(draw):
            out = {k: draw(s) for k, s in fields.items()}
            if depth <= MAX_DEPTH and optional:
                for k in draw(st.lists(st.sampled_from(optional), max_size=OPTIONAL_MAX, unique=True)):
                    if k not in built:
                        built[k] = self.strategy(props[k], depth + 1)
                    out[k] = draw(built[k])
            return out

        return build()

    def broken(self, name: str, overrides: dict[str, st.SearchStrategy] | None = None,
               defaults: dict[str, st.SearchStrategy] | None = None) -> st.SearchStrategy:
        """A body of `name` with one thing broken: a field (present or not) given a value of another type, a
        required field removed, or a nested value replaced."""
        props = sorted(self.properties(name))
        valid = self.valid(name, overrides, defaults)

        @st.composite
        def build(draw):
            # a copy: a body may hold a strategy's own object (st.just, an enum value), which a mutation below
            # would change for every later example (hypothesis then sees generation change under it)
            body = copy.deepcopy(draw(valid))
            how = draw(st.sampled_from(["field", "field", "drop", "nested"]))
            if how == "drop" and body:
                body.pop(draw(st.sampled_from(sorted(body))))
            elif how == "nested" and body:
                _replace_nested(draw, body)
            else:
                body[draw(st.sampled_from(props))] = draw(WRONG)
            return body

        return build()


def _replace_nested(draw, node: object) -> None:
    """One value somewhere inside `node` (a dict or a list) replaced by a value of another type."""
    for _ in range(8):  # bounded walk down
        keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
        if not keys:
            return
        key = draw(st.sampled_from(keys))
        child = node[key]  # type: ignore[index]
        if isinstance(child, (dict, list)) and child and draw(st.booleans()):
            node = child
            continue
        node[key] = draw(WRONG)  # type: ignore[index]
        return
