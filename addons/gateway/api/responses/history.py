"""What the gateway keeps of a Response for later requests (stores/responses.py, and a WebSocket's recent responses):
the conversation as items that a `previous_response_id` continues from, and the request's input as the
stored items GET /v1/responses/{id}/input_items lists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ...stores.responses_rows import listed
from .compaction import SUMMARY_PREFIX

_PASSTHROUGH = "internal_chat_message_metadata_passthrough"  # the client's bookkeeping: not kept


def history_items(items: list[dict], response: Mapping[str, Any], seal: Callable[[str, dict], str] | None = None,
                  summary: str | None = None, reasoning: Mapping[str, str] | None = None) -> list[dict]:
    """What a later `previous_response_id` continues from: every item so far (`Translation.items`: earlier
    turns, every input item — developer messages and additional_tools included — references resolved) and
    this answer's output, its reasoning sealed so that it goes back to Qwen (the text from the item's summary,
    or from `reasoning`, item id -> text, when the client asked for no summary). A compaction answer (`summary`)
    keeps the user's (and system and developer) messages and the summary instead of the conversation."""
    if summary is not None:  # the summary leaves out system and developer messages: they are kept
        kept = [i for i in items if i.get("type", "message") == "message" and not _is_summary(i)
                and i.get("role") in ("user", "system", "developer")]
        return kept + [{"type": "message", "role": "user", "content": SUMMARY_PREFIX + summary}]
    out = [{k: v for k, v in i.items() if k != _PASSTHROUGH} for i in items]
    for item in response.get("output") or []:
        if item.get("type") == "reasoning" and not item.get("encrypted_content") and seal is not None:
            text = "".join(p.get("text", "") for p in item.get("summary") or []) or (reasoning or {}).get(
                str(item.get("id")), "")
            item = {**item, "encrypted_content": seal("reasoning", {"text": text})} if text else item
        out.append(item)
    return out


def _is_summary(item: dict) -> bool:
    content = item.get("content")
    return isinstance(content, str) and content.startswith(SUMMARY_PREFIX)


def input_items(body: dict, response_id: str | None = None) -> list[dict]:
    """The request's input as GET /v1/responses/{id}/input_items lists it (each with an id)."""
    return [listed(item, response_id, n) for n, item in enumerate(kept_inputs(body))]


def kept_inputs(body: dict) -> list[dict]:
    """The request's input as it is stored: each item as the client sent it, its bookkeeping dropped (`listed`
    gives the spec's form, and an id to an item without one)."""
    raw = body.get("input")
    items: list[dict] = [{"type": "message", "role": "user", "content": raw}] \
        if isinstance(raw, str) else [i for i in raw if isinstance(i, dict)] if isinstance(raw, list) else []
    return [{k: v for k, v in item.items() if k != _PASSTHROUGH} if _PASSTHROUGH in item else item for item in items]
