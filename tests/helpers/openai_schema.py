"""Validate answers against OpenAI's published schemas (extracted by scripts/extract_schemas.py)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DOC = json.loads((Path(__file__).parents[1] / "data" / "openai_schemas.json").read_text())


def _null_as_openai_sends(doc: dict) -> None:
    """A Response's `usage` (before it is known) and `user` (when not sent) are null on OpenAI's wire and in its
    spec's own examples (ResponseCreatedEvent's), and the Open Responses spec requires both, nullable; the schema
    alone types them an object and a string."""
    schemas = doc["components"]["schemas"]
    props = schemas["Response"]["allOf"][2]["properties"]
    props["usage"] = {"anyOf": [props["usage"], {"type": "null"}]}
    user = schemas["ModelResponseProperties"]["properties"]
    user["user"] = {"anyOf": [user["user"], {"type": "null"}]}


_null_as_openai_sends(DOC)
URI = "urn:openai-openapi"
REGISTRY = Registry().with_resource(URI, Resource(DOC, specification=DRAFT202012))


@functools.cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    if name not in DOC["components"]["schemas"]:
        raise KeyError(f"schema {name} was not extracted")
    return jsonschema.Draft202012Validator({"$ref": f"{URI}#/components/schemas/{name}"}, registry=REGISTRY)


def validate(name: str, instance: object) -> None:
    errors = sorted(_validator(name).iter_errors(instance), key=lambda e: list(e.path))
    if errors:
        lines = [f"  at {'/'.join(map(str, e.path)) or '<root>'}: {e.message[:300]}" for e in errors[:10]]
        raise AssertionError(f"not a valid {name}:\n" + "\n".join(lines))


def _event_schemas() -> dict[str, str]:
    """Responses stream event type -> the schema that defines it (from ResponseStreamEvent's union)."""
    schemas = DOC["components"]["schemas"]
    out = {}
    union = schemas["ResponseStreamEvent"]
    for option in union.get("anyOf") or union.get("oneOf") or []:
        name = option["$ref"].rsplit("/", 1)[1]
        enum = schemas[name].get("properties", {}).get("type", {}).get("enum") or []
        for t in enum:
            out[t] = name
    return out


EVENT_SCHEMAS = _event_schemas()


def validate_stream_event(event: dict) -> None:
    """Validate against the event's own schema (clearer errors than the union), then the union."""
    name = EVENT_SCHEMAS.get(event.get("type"))
    if name is None:
        raise AssertionError(f"unknown Responses stream event type {event.get('type')!r}")
    validate(name, event)
    validate("ResponseStreamEvent", event)
