"""Validate answers against OpenAI's published schemas (extracted by scripts/extract_schemas.py)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DOC = json.loads((Path(__file__).parent / "data" / "openai_schemas.json").read_text())
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


def validate_stream_event(event: dict) -> None:
    validate("ResponseStreamEvent", event)
