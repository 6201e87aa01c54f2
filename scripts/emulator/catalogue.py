"""The models the emulator plays: the gateway's model catalogue (addons/gateway/models/catalogue.toml, its fields
documented at its top), read here with tomllib so that the emulator imports nothing of the gateway yet plays the
same rows. The emulator holds no model table of its own (tests/unit/upstream/dashscope/test_thinking.py checks
this loader against the gateway's).

A row is the TOML's own dict; a row naming `family` holds its family's facts where it gives none. A model id the
catalogue does not name is not a model here (the `extra_models` switch adds some, server side).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

PATH = Path(__file__).resolve().parents[2] / "addons" / "gateway" / "models" / "catalogue.toml"
# What a row does not take from its family (models/catalogue.py's `_row`): its name, sources, dates and successors.
NOT_INHERITED = ("family", "sources", "released", "retires", "successor", "successors", "replaced_by")


def rows(models: dict) -> dict[str, dict]:
    """Each model's facts, its family's filled in (a family is a row above the rows naming it)."""
    out: dict[str, dict] = {}
    for model_id, raw in models.items():
        family = out[raw["family"]] if "family" in raw else {}
        out[model_id] = {**{k: v for k, v in family.items() if k not in NOT_INHERITED}, **raw}
    return out


def load(path: Path = PATH) -> dict[str, dict]:
    return rows(tomllib.loads(path.read_text(encoding="utf-8"))["models"])


MODELS = load()
# Which endpoints serve each model besides chat: the catalogue's `responses`, `session_cache`, `batch` (a
# snapshot takes its family's, as for its other facts)
ENDPOINTS = {model_id: {k: bool(row.get(k)) for k in ("responses", "session_cache", "batch")}
             for model_id, row in MODELS.items()}


def serves(model: object, endpoint: str) -> bool:
    """Whether Model Studio serves `model` on this endpoint (`responses`, `session_cache`, `batch`)."""
    return isinstance(model, str) and bool(ENDPOINTS.get(model, {}).get(endpoint))


def row(model: object) -> dict | None:
    """The model's facts; None: the catalogue does not name it."""
    return MODELS.get(model) if isinstance(model, str) else None


def window(model: object) -> int:
    """The longest prompt the model takes (`input`, else `context`); 0: the catalogue gives none."""
    r = row(model)
    return int(r.get("input") or r.get("context") or 0) if r is not None else 0


def having(fact: str) -> tuple[str, ...]:
    """The models for which this fact (`vision`, `search`, `stream_only`, …) is true, in the catalogue's order."""
    return tuple(m for m, r in MODELS.items() if r.get(fact))


CHAT_MODELS = tuple(m for m, r in MODELS.items() if r.get("kind", "chat") == "chat")
EMBEDDING_SIZES = {m: tuple(r["dimensions"]) for m, r in MODELS.items() if r.get("kind") == "embedding"}
OUTPUT_CAPS = {m: r["output"] for m, r in MODELS.items() if m in CHAT_MODELS and r.get("output")}
