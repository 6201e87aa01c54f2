"""A function's `parameters` (and a Messages tool's `input_schema`) must be a JSON Schema: the spec calls
`parameters` only "an object", but OpenAI refuses one that is no JSON Schema with 400
`invalid_function_parameters` ("Invalid schema for function 'NAME': …"), and Anthropic refuses such an
`input_schema` too, rather than offer the model a tool nobody could call right.

`schema_problem` is the structural part of JSON Schema's metaschema — each keyword's value of the right kind,
subschemas checked in turn — written here because jsonschema is no runtime dependency (a test extra only).
Pure functions.
"""

from __future__ import annotations

import json

from ..errors import GatewayError

# JSON Schema's keywords by what their value must be (the metaschema's structure; draft 2020-12, and draft-07's
# `definitions`, `additionalItems` and tuple `items`, which clients still send). Bounds (`minimum`, …) are left
# alone: their form differs between drafts (draft-04's boolean `exclusiveMinimum`), and nothing depends on them.
_SCHEMA_TYPES = ("array", "boolean", "integer", "null", "number", "object", "string")
_ONE_SCHEMA = ("additionalProperties", "not", "contains", "propertyNames", "if", "then", "else", "additionalItems",
               "unevaluatedItems", "unevaluatedProperties")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")  # non-empty arrays of schemas
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


def _shown(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)[:80]


def _keyword_problem(key: str, value: object) -> str | None:
    """What is wrong with one keyword's own value (its subschemas are looked at by `schema_problem`), in the
    words of jsonschema's errors, which OpenAI's show."""
    if key == "type":
        names = value if isinstance(value, list) else [value]
        if not isinstance(value, (str, list)):
            return f"{_shown(value)} is not of type 'string', 'array'"
        bad = next((t for t in names if t not in _SCHEMA_TYPES), None)
        if bad is not None:
            return f"{_shown(bad)} is not one of " + ", ".join(f"'{t}'" for t in _SCHEMA_TYPES)
    elif key in ("required", "enum") and not isinstance(value, list):
        return f"{_shown(value)} is not of type 'array'"
    elif key in _SCHEMA_MAPS and not isinstance(value, dict):
        return f"{_shown(value)} is not of type 'object'"
    elif key in _SCHEMA_LISTS and (not isinstance(value, list) or not value):
        return f"{_shown(value)} " + ("should be non-empty" if value == [] else "is not of type 'array'")
    return None


def _subschemas(key: str, value: object, path: tuple) -> list[tuple[tuple, object]]:
    """The subschemas a (well-formed) keyword holds, each with its path."""
    if key in _ONE_SCHEMA or key == "items" and not isinstance(value, list):
        return [((*path, key), value)]
    if (key in _SCHEMA_LISTS or key == "items") and isinstance(value, list):
        return [((*path, key, i), v) for i, v in enumerate(value)]
    if key in _SCHEMA_MAPS and isinstance(value, dict):
        return [((*path, key, k), v) for k, v in value.items()]
    return []


def schema_problem(schema: object) -> tuple[tuple, str] | None:
    """Where `schema` is no JSON Schema and why (the path of keys down to it), or None. A loop, not recursion:
    a schema nested thousands deep is a client's to send, never the gateway's RecursionError."""
    todo: list[tuple[tuple, object]] = [((), schema)]
    while todo:
        path, node = todo.pop()
        if isinstance(node, bool):
            continue  # `true` / `false`: schemas too
        if not isinstance(node, dict):
            return path, f"{_shown(node)} is not of type 'object', 'boolean'"
        for key, value in node.items():
            problem = _keyword_problem(key, value)
            if problem is None and key == "required":
                bad = next((i for i, name in enumerate(value) if not isinstance(name, str)), None)
                if bad is not None:
                    return (*path, key, bad), f"{_shown(value[bad])} is not of type 'string'"
            if problem is not None:
                return (*path, key), problem
            todo += reversed(_subschemas(key, value, path))  # reversed: a keyword's subschemas popped in order
    return None


def function_parameters(body: dict) -> dict:
    """`body` when every function's `parameters` (chat `tools`, legacy `functions`) is a JSON Schema; else
    OpenAI's 400 `invalid_function_parameters` naming the function (run after `check`: the shapes are sound)."""
    if "tools" not in body and "functions" not in body:  # most requests: nothing to walk
        return body
    found = [(f"tools[{i}].function", t.get("function")) for i, t in enumerate(body.get("tools") or [])
             if isinstance(t, dict) and t.get("type") == "function"]
    found += [(f"functions[{i}]", f) for i, f in enumerate(body.get("functions") or [])]
    for where, fn in found:
        if not isinstance(fn, dict) or "parameters" not in fn:
            continue
        problem = schema_problem(fn["parameters"])
        if problem is not None:
            path, what = problem
            raise GatewayError(400, f"Invalid schema for function '{fn.get('name')}': In context={path!r}, {what}.",
                               param=f"{where}.parameters", code="invalid_function_parameters")
    return body
