"""Extract the OpenAI schemas the tests validate against into tests/data/openai_schemas.json, and the request
schemas the gateway validates chat, legacy completions, Responses and embeddings bodies with into
addons/gateway/api/request_schemas.json (descriptions dropped, the gateway's documented widenings and Qwen's
bounds applied).

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
          # request bodies: what the fuzzer (tests/e2e/test_e2e_fuzz.py) generates, and what the gateway validates
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
VALIDATED = ["CreateChatCompletionRequest", "CreateCompletionRequest", "CreateResponse", "CreateEmbeddingRequest"]
# A Responses body may carry only the request's own fields, as OpenAI answers others (`Unknown parameter`);
# besides them, what real clients send that the gateway documents: Codex's `client_metadata` (dropped).
RESPONSES_EXTRA = ["client_metadata"]
# Items a client gives back as input need no `id` or `status` (OpenAI's API takes them without: Codex sends its
# assistant messages and reasoning so; an assistant message, like any, no `type`); fields OpenAI's API defaults
# need not be sent (an `output_text`'s `annotations`, an `input_image`'s `detail`, a function tool's `strict` and
# `parameters`); and two item types
# the gateway reads besides the spec's: Codex's `configuration_update`, and `compaction_summary` (an older
# name of `compaction`).
GIVEN_BACK = ("id", "status")
EXTRA_ITEMS = [{"type": "object", "properties": {"type": {"type": "string", "enum": ["configuration_update"]}},
                "required": ["type"]},
               {"type": "object", "properties": {"type": {"type": "string", "enum": ["compaction_summary"]},
                                                 "encrypted_content": {"type": "string"}},
                "required": ["type", "encrypted_content"]}]
NULLABLE = (("ReasoningItem", "content"),)  # Codex gives its reasoning items back with `content: null`
DEFAULTED = (("OutputTextContent", ("annotations", "logprobs")), ("InputImageContent", ("detail",)),
             ("FunctionTool", ("strict", "parameters")))  # what OpenAI's API defaults when it is left out
# Qwen's lower bound of an answer's length (dashscope-rules.md R4: "Range of max_tokens should be [1, N]"),
# refused by the gateway naming the client's own field; above the model's cap it is lowered to the cap.
MIN_ONE = (("CreateChatCompletionRequest", "max_tokens"), ("CreateChatCompletionRequest", "max_completion_tokens"),
           ("CreateCompletionRequest", "max_tokens"))
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


def _properties(schemas: dict, node: dict) -> list[str]:
    """Every property an object schema names, through `$ref` and `allOf`."""
    while "$ref" in node:
        node = schemas[node["$ref"][len(PREFIX):]]
    names = list(node.get("properties") or {})
    for part in node.get("allOf") or []:
        names += [n for n in _properties(schemas, part) if n not in names]
    return names


def _union(schemas: dict, name: str) -> list[str]:
    """The named schemas a union is made of, a member that is itself a union (`Item`) replaced by its own."""
    out = []
    for option in schemas[name].get("oneOf") or schemas[name].get("anyOf") or []:
        member = option.get("$ref", "")[len(PREFIX):]
        inner = schemas.get(member, {})
        out += _union(schemas, member) if "oneOf" in inner or "anyOf" in inner else [member] if member else []
    return out


def _own(schema: dict, prop: str) -> dict:
    """The property's schema where the object (or one of its allOf parts) defines it."""
    for part in [schema, *schema.get("allOf", [])]:
        if prop in part.get("properties", {}):
            return part["properties"][prop]
    raise KeyError(prop)


def gateway_schemas(spec: dict) -> dict:
    doc = extract(spec, VALIDATED)
    schemas = {name: _bare(schema) for name, schema in doc["components"]["schemas"].items()}
    image = {"$ref": PREFIX + "ChatCompletionRequestMessageContentPartImage"}
    schemas["ChatCompletionRequestToolMessageContentPart"]["oneOf"].append(image)
    for name, prop in MIN_ONE:
        _own(schemas[name], prop)["minimum"] = 1
    for name in _union(schemas, "InputItem"):
        item = schemas[name]
        given_back = ("type", *GIVEN_BACK) if name == "OutputMessage" else () if name == "ItemReferenceParam" else \
            GIVEN_BACK  # a message's `type` may be left out; a reference is its id
        item["required"] = [r for r in item.get("required", []) if r not in given_back]
    for name, prop in NULLABLE:
        schemas[name]["properties"][prop] = {"anyOf": [schemas[name]["properties"][prop], {"type": "null"}]}
    for name, optional in DEFAULTED:
        schemas[name]["required"] = [r for r in schemas[name]["required"] if r not in optional]
    schemas["InputItem"]["oneOf"] += EXTRA_ITEMS
    known = _properties(schemas, schemas["CreateResponse"]) + RESPONSES_EXTRA
    schemas["CreateResponseBody"] = {"allOf": [{"$ref": PREFIX + "CreateResponse"}, {"propertyNames": {"enum": known}}]}
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
