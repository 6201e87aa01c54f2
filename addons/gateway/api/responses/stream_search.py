"""The Responses stream's web search events (stream.py): the `web_search_call` item of an answer Qwen searched
for, streamed whole as soon as its sources arrive, and one `response.output_text.annotation.added` per
citation of the message, sent when the annotations arrive (the answer's last chunk). No I/O."""

from __future__ import annotations

from collections.abc import Callable

from ..websearch import WebSearchCallItem
from .events import StreamEvent


def search_call(ev: Callable[[StreamEvent], bytes], index: int, item: WebSearchCallItem) -> list[bytes]:
    """A finished search, in OpenAI's order: added (in progress), in_progress, searching, completed, done."""
    added: WebSearchCallItem = {**item, "status": "in_progress"}
    return [ev({"type": "response.output_item.added", "output_index": index, "item": added}),
            ev({"type": "response.web_search_call.in_progress", "output_index": index, "item_id": item["id"]}),
            ev({"type": "response.web_search_call.searching", "output_index": index, "item_id": item["id"]}),
            ev({"type": "response.web_search_call.completed", "output_index": index, "item_id": item["id"]}),
            ev({"type": "response.output_item.done", "output_index": index, "item": item})]


def annotations_added(ev: Callable[[StreamEvent], bytes], item_id: str, index: int, first: int,
                      annotations: list[dict]) -> list[bytes]:
    """The message's new annotations (`first`: how many it had before)."""
    return [ev({"type": "response.output_text.annotation.added", "item_id": item_id, "output_index": index,
                "content_index": 0, "annotation_index": first + i, "annotation": a})
            for i, a in enumerate(annotations)]
