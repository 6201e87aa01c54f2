"""What a stored chat completion is, as pure functions: OpenAI's metadata rules, the row kept for one
completion (the completion as the client got it, the request's messages with their ids), and the list
endpoint's query and filter. No I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ...errors import GatewayError
from ...jsonio import valid_text
from ...stores.stored_chat import Row

MAX_KEYS, MAX_KEY, MAX_VALUE = 16, 64, 512  # OpenAI's metadata: 16 pairs, keys ≤ 64 chars, values ≤ 512
PARTS = ("text", "image_url")  # the content parts a stored message lists (OpenAI's content_parts)


def invalid(message: str, param: str, code: str = "invalid_value") -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


def check_metadata(value: object, param: str = "metadata") -> dict[str, str]:
    """OpenAI's metadata rules (an object of at most 16 string pairs, keys ≤ 64 chars, values ≤ 512): the
    metadata, {} for null; a 400 naming the field otherwise."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(f"Invalid type for '{param}': expected an object, but got {type(value).__name__} instead.",
                      param, "invalid_type")
    if len(value) > MAX_KEYS:
        raise invalid(f"Invalid '{param}': too many properties. Expected an object with at most {MAX_KEYS} "
                      f"properties, but got an object with {len(value)} properties instead.", param,
                      "object_above_max_size")
    for key, text in value.items():
        if len(key) > MAX_KEY:
            raise invalid(f"Invalid '{param}': string too long. Expected a key with maximum length {MAX_KEY}, "
                          f"but got a key with length {len(key)} instead.", param, "string_above_max_length")
        if not isinstance(text, str):
            raise invalid(f"Invalid type for '{param}.{key}': expected a string, but got "
                          f"{type(text).__name__} instead.", f"{param}.{key}", "invalid_type")
        if len(text) > MAX_VALUE:
            raise invalid(f"Invalid '{param}.{key}': string too long. Expected a string with maximum length "
                          f"{MAX_VALUE}, but got a string with length {len(text)} instead.", f"{param}.{key}",
                          "string_above_max_length")
    return value


def row_of(body: dict, completion: dict, created: float, owner: str) -> Row:
    """What is kept of one `store: true` exchange: the completion the client got, its request's messages,
    model and metadata (already checked by `check_metadata`), for `owner`. Never a credential: none is in
    either (the owner is the key's name)."""
    cid = valid_text(str(completion["id"]))
    return Row(id=cid, created=created, model=str(completion.get("model") or body.get("model") or ""),
               metadata=json.dumps(body.get("metadata") or {}), completion=json.dumps(completion),
               messages=json.dumps(stored_messages(cid, body.get("messages") or [])), owner=owner)


def stored_messages(cid: str, messages: list) -> list[dict]:
    """The request's messages as OpenAI lists them back: each with an id (`<completion id>-<index>`), its
    text as `content`, and the parts it was sent as in `content_parts` (null for a string)."""
    out = []
    for i, m in enumerate(messages):
        m = m if isinstance(m, dict) else {}
        content = m.get("content")
        parts = None
        if isinstance(content, list):
            parts = [p for p in content if isinstance(p, dict) and p.get("type") in PARTS]
            content = "".join(str(p.get("text") or "") for p in parts if p.get("type") == "text")
        out.append({**m, "id": f"{cid}-{i}", "content": content, "name": m.get("name"), "content_parts": parts})
    return out


@dataclass(frozen=True)
class Filter:
    """GET /v1/chat/completions's query: `model`, and `metadata[key]=value` pairs (all must match)."""

    model: str | None
    metadata: dict[str, str]

    def matches(self, model: str, metadata: str) -> bool:
        if self.model is not None and model != self.model:
            return False
        if not self.metadata:
            return True
        kept: dict[str, Any] = json.loads(metadata)
        return all(kept.get(k) == v for k, v in self.metadata.items())


def list_filter(query) -> Filter:
    """The filter of a list request's query (mitmproxy's MultiDictView, or any mapping)."""
    pairs = {k[len("metadata["):-1]: v for k, v in query.items() if k.startswith("metadata[") and k.endswith("]")}
    model = query.get("model")
    return Filter(model=model or None, metadata=check_metadata(pairs, "metadata"))
