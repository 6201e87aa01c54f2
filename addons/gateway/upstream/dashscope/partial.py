"""Model Studio's partial mode (the catalogue's source AB): the model goes on from a prefix, the last message an
assistant's text marked `"partial": true` — on the models the page lists (the catalogue's `partial`), in
non-thinking mode only. The turn continues a stream cut mid-answer with it (turn/continuation.py)."""

from __future__ import annotations

from ...models import catalogue
from ...tokens import encoding
from . import thinking


def continued(body: dict, prefix: str) -> dict | None:
    """The request as it was sent, going on from `prefix` (the text the client already has), its output cap less
    what the prefix spent; None when partial mode cannot serve it: a model the page does not list, a request that
    thinks, searches (its sources are per request) or asks more than one choice."""
    model = str(body.get("model") or "")
    row = catalogue.find(model)
    messages = body.get("messages")
    if row is None or not row.partial or thinks(body, model) or body.get("enable_search") \
            or body.get("n") not in (None, 1) or not isinstance(messages, list):
        return None
    out = {**body, "messages": [*messages, {"role": "assistant", "content": prefix, "partial": True}]}
    spent = encoding().count(prefix) if prefix else 0
    for key in ("max_completion_tokens", "max_tokens"):  # the answer as a whole keeps the client's cap
        cap = out.get(key)
        if isinstance(cap, int) and not isinstance(cap, bool):
            out[key] = max(1, cap - spent)
    return out


def thinks(body: dict, model: str) -> bool:
    """Whether the request as sent has the model think: its switch as knobs.py wrote it, else the model's way when
    told nothing (a model whose thinking is not known may think)."""
    asked = body.get("enable_thinking")
    if isinstance(asked, bool):
        return asked
    found = thinking.spec(model)
    return found.kind is not thinking.NONE and (found.default_on or found.kind is not thinking.HYBRID)
