"""What one stored Response is as rows (store.py, store_pg.py), made by the store's worker thread from the answer
and the request's parts: the response, the conversation a later request continues from (its history), the
request's input items, and a row per item a later `item_reference` may name.

Each part is compact UTF-8 JSON. The input items are kept as the client sent them (history.listed gives them
the spec's form when they are read), and a row of their own only for items the client gave an id (and the
answer's items): an input item without one is named by an `input_id` — its response and place — which is
found in the response's input items and kept nowhere. (Before, each input item was written three times, one
of them in a row of its own with a new id: 30 bytes on disk per byte of a request of many small items.)"""

from __future__ import annotations

import time
from collections.abc import Callable

from ...jsonio import dumps_text, valid_text

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
