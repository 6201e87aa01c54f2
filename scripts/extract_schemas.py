"""Extract the OpenAI schemas the tests validate against into tests/data/openai_schemas.json.

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
          "ResponseStreamEvent", "CompactResource", "ResponseItemList", "TokenCountsResource"]
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


def extract(spec: dict) -> dict:
    schemas = spec["components"]["schemas"]
    todo, done = list(NEEDED), {}
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


def main(argv: list[str]) -> int:
    src = Path(argv[0]) if argv else ROOT.parent / "shared" / "spec" / "openai-openapi.json"
    out = ROOT / "tests" / "data" / "openai_schemas.json"
    out.write_text(json.dumps(extract(json.loads(src.read_text())), indent=1, sort_keys=False) + "\n")
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
