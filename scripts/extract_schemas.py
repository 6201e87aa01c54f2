"""Extract the OpenAI schemas the tests validate against into tests/data/openai_schemas.json, and the request
schemas the gateway validates chat and legacy completions bodies with into
addons/gateway/api/request_schemas.json (descriptions dropped, the gateway's documented widenings applied).

    .venv/bin/python scripts/extract_schemas.py [path/to/openai-openapi.json]

Source: repository openai/openai-openapi, commit f85dbe223d40e1a31cba812ab2d755c7e98a92a3 (spec 2.3.0,
MIT licence), shipped beside this repository as ../shared/spec/openai-openapi.json. A fresh clone has no
../shared, so the extracted file is committed. OpenAPI's `nullable: true` becomes a JSON Schema union.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NEEDED = ["CreateChatCompletionResponse", "CreateChatCompletionStreamResponse", "CreateCompletionResponse",
          "CreateEmbeddingResponse", "ListModelsResponse", "Model", "ErrorResponse", "Response",
          "ResponseStreamEvent", "CompactResource", "ResponseItemList", "TokenCountsResource",
          # request bodies: what the fuzzer (tests/test_e2e_fuzz.py) generates, and what the gateway validates
          "CreateChatCompletionRequest", "CreateCompletionRequest", "CreateEmbeddingRequest", "CreateResponse"]
PREFIX = "#/components/schemas/"


def _refs(node, out: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(PREFIX):
            out.add(ref[len(PREFIX):])
        for v in node.values():
            _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)


def _nullable(node):
    if isinstance(node, dict):
        node = {k: _nullable(v) for k, v in node.items() if not k.startswith("x-oai")}
        if node.pop("nullable", False):
            if isinstance(node.get("type"), str):
                node["type"] = [node["type"], "null"]
            elif "$ref" in node or "anyOf" in node or "oneOf" in node or "allOf" in node:
                node = {"anyOf": [node, {"type": "null"}]}
            if "enum" in node and None not in node["enum"]:
                node["enum"] = [*node["enum"], None]
        return node
    if isinstance(node, list):
        return [_nullable(v) for v in node]
    return node


def extract(spec: dict, needed: list[str] = NEEDED) -> dict:
    schemas = spec["components"]["schemas"]
    todo, done = list(needed), {}
    while todo:
        name = todo.pop()
        if name in done:
            continue
        done[name] = _nullable(schemas[name])
        found: set[str] = set()
        _refs(schemas[name], found)
        todo += sorted(found - set(done))
    return {"x-source": "openai/openai-openapi@f85dbe223d40e1a31cba812ab2d755c7e98a92a3 (spec "
                        f"{spec['info']['version']})", "x-license": "MIT", "x-generated-by": "scripts/extract_schemas.py",
            "components": {"schemas": dict(sorted(done.items()))}}


# What the gateway validates (api/request_schema.py), and where it takes more than the spec, each a documented
# feature (docs/compatibility.md): images in a tool message (moved to a user message for the vision model).
VALIDATED = ["CreateChatCompletionRequest", "CreateCompletionRequest"]
_DROPPED_KEYS = ("description", "title", "example", "examples", "default", "deprecated", "discriminator")


def _bare(node):
    """The schema without its prose: what a validator reads (a property's name is kept, whatever it is)."""
    if isinstance(node, list):
        return [_bare(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _bare(v) for k, v in node.items()
           if k != "properties" and k not in _DROPPED_KEYS and not k.startswith("x-")}
    if isinstance(node.get("properties"), dict):
        out["properties"] = {name: _bare(v) for name, v in node["properties"].items()}
    return out


def gateway_schemas(spec: dict) -> dict:
    doc = extract(spec, VALIDATED)
    schemas = {name: _bare(schema) for name, schema in doc["components"]["schemas"].items()}
    image = {"$ref": PREFIX + "ChatCompletionRequestMessageContentPartImage"}
    schemas["ChatCompletionRequestToolMessageContentPart"]["oneOf"].append(image)
    return {"x-source": doc["x-source"], "x-license": "MIT", "x-generated-by": "scripts/extract_schemas.py",
            "components": {"schemas": schemas}}


def main(argv: list[str]) -> int:
    src = Path(argv[0]) if argv else ROOT.parent / "shared" / "spec" / "openai-openapi.json"
    spec = json.loads(src.read_text())
    out = ROOT / "tests" / "data" / "openai_schemas.json"
    out.write_text(json.dumps(extract(spec), indent=1, sort_keys=False) + "\n")
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")
    out = ROOT / "addons" / "gateway" / "api" / "request_schemas.json"
    out.write_text(json.dumps(gateway_schemas(spec), separators=(",", ":"), sort_keys=True) + "\n")
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
