"""What one stored Response is as rows (responses.py, responses_pg.py), made by the store's worker thread from the
answer and the request's parts: the response, the conversation a later request continues from (its history), the
request's input items, and a row per item a later `item_reference` may name.

Each part is compact UTF-8 JSON. The input items are kept as the client sent them (`listed` below gives them
the spec's form when they are read), and a row of their own only for items the client gave an id (and the
answer's items): an input item without one is named by an `input_id` — its response and place — which is
found in the response's input items and kept nowhere. (Before, each input item was written three times, one
of them in a row of its own with a new id: 30 bytes on disk per byte of a request of many small items.)"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from ..ids import hex_id
from ..jsonio import dumps_text, valid_text

# id, owner, created, the response, its history, its input items, and (item id, response id, item, owner)
Rows = tuple[str, str, float, str, str, str, list[tuple[str, str, str, str]]]
# a part given as it is, or as the function that makes it (run by the store's worker thread)
Part = dict | list[dict] | None | Callable[[], dict | list[dict] | None]


def made(part: Part) -> dict | list[dict] | None:
    return part() if callable(part) else part


def rows_of(response: dict, history: Part, inputs: Part, owner: str) -> Rows:
    """The rows of one stored response (`history` and `inputs` made here when they are functions)."""
    rid = response["id"]
    kept = made(inputs) or []
    assert isinstance(kept, list)
    items = [i for i in kept + list(response.get("output") or [])
             if isinstance(i, dict) and isinstance(i.get("id"), str) and i["id"]]  # an input without: input_id
    return (rid, owner, time.time(), dumps_text(response), dumps_text(made(history)), dumps_text(kept),
            [(valid_text(i["id"]), rid, dumps_text(i), owner) for i in items])  # a client id: maybe a lone surrogate


def size(rows: Rows) -> int:
    """The characters of text one stored response writes."""
    _, _, _, response, history, inputs, items = rows
    return len(response) + len(history) + len(inputs) + sum(len(item[2]) for item in items)


def wanted_ids(body: dict) -> list[str]:
    """The stored responses and items a Responses body refers to (previous_response_id, item_reference)."""
    ids = [body["previous_response_id"]] if isinstance(body.get("previous_response_id"), str) else []
    items = body.get("input")
    if isinstance(items, list):
        ids += [i["id"] for i in items if isinstance(i, dict) and i.get("type") == "item_reference"
                and isinstance(i.get("id"), str)]
    return [valid_text(i) for i in ids]  # a database can look up no lone surrogate


# Input items whose listed form (the spec's ItemResource) carries a status: "completed" when the client sent none
_WITH_STATUS = frozenset({"message", "function_call", "function_call_output", "custom_tool_call",
                          "custom_tool_call_output", "tool_search_call", "tool_search_output", "computer_call_output",
                          "shell_call", "shell_call_output", "local_shell_call_output"})


def listed(item: dict, response_id: str | None, n: int) -> dict:
    """The `n`th input item of `response_id` in the form the spec lists it (ItemResource): typed, a message's
    text as a part, a status where the spec has one, and an id — its own, else the `input_id` that names its
    response and place (the same at every read; a new one without a response)."""
    item = dict(item)
    kind = item.setdefault("type", "message")
    if kind == "message" and isinstance(item.get("content"), str):
        item["content"] = [{"type": "input_text", "text": item["content"]}]
    if kind in _WITH_STATUS:
        item.setdefault("status", "completed")
    if not item.get("id"):
        prefix = _ID_PREFIXES.get(kind, "item")
        item["id"] = input_id(prefix, response_id, n) if response_id else f"{prefix}_{hex_id()}"
    return item


_ID_PREFIXES = {"message": "msg", "function_call_output": "fco", "custom_tool_call_output": "ctco"}
_INPUT_ID = re.compile(r"(?:msg|fco|ctco|item)_([0-9a-f]{32})([0-9a-f]{1,6})")


def input_id(prefix: str, response_id: str, n: int) -> str:
    """The id of the `n`th input item of `response_id` (resp_ and 32 hex digits) when the client gave it none:
    the response's digits and the place in hex — opaque to the client, longer than any new id, and kept
    nowhere (`input_place` reads it back)."""
    return f"{prefix}_{response_id.partition('_')[2]}{n:x}"


def input_place(item_id: str) -> tuple[str, int] | None:
    """The response and place an `input_id` names (None: not one)."""
    m = _INPUT_ID.fullmatch(item_id)
    return (f"resp_{m.group(1)}", int(m.group(2), 16)) if m else None
