"""The web catalogue, `GET /api/models` (qwen-web-protocol.md §1.10): `{"data": [ModelRecord…]}`, no auth."""

from __future__ import annotations

from . import catalogue

CREATED = 1780000000  # one fixed date: answers stay deterministic
MAX_CONTEXT = 1_000_000  # self-reported; where it nests is UNVERIFIED (assumed: info.meta)
ALL_TYPES = ["t2t", "search", "t2i", "t2v", "image_edit", "deep_research"]
MCP = ["image-generation", "code-interpreter", "amap", "fire-crawl"]

# The models Qwen Chat offers: the catalogue's `web` rows (qwen-web-protocol.md §1.10), each thinking as its row
# says. Qwen Chat's chat types and hosted tools per model are not in the catalogue (the gateway reads neither):
# every model gets the same ones.
CATALOGUE: dict[str, tuple[bool, list[str], list[str]]] = {
    m: (catalogue.MODELS[m].get("thinking", "none") != "none", ALL_TYPES, MCP) for m in catalogue.having("web")}
DEFAULT = (True, ["t2t", "search"], [])  # a model named by the `models` switch that the catalogue lacks


def record(model_id: str) -> dict:
    thinking, chat_types, mcp = CATALOGUE.get(model_id, DEFAULT)
    name = model_id.replace("-", " ").title()  # "Qwen3.7 Plus"
    return {"id": model_id, "name": name, "object": "model", "owned_by": "qwen",
            "info": {"id": model_id, "name": name, "created_at": CREATED,
                     "meta": {"abilities": {"thinking": thinking},
                              "chat_type": list(chat_types), "mcp": list(mcp), "max_context_length": MAX_CONTEXT}}}


def ids(sw: dict) -> list[str]:
    return [str(m) for m in sw["models"]] if isinstance(sw.get("models"), list) else list(CATALOGUE)


def catalogue(sw: dict) -> dict:
    return {"data": [record(m) for m in ids(sw)]}


def thinks(model_id: str) -> bool:
    return CATALOGUE.get(model_id, DEFAULT)[0]
