"""The Responses API's state in the gateway's state folder: stored Responses (`previous_response_id`,
`GET /v1/responses/{id}`, its `input_items`, `item_reference`s to their items) in SQLite, bounded, 0600;
and the key that seals `encrypted_content` (seal.py, `seal.key` beside the database)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Awaitable
from pathlib import Path

from ...auth.state import open_private_db, transaction
from ...errors import GatewayError
from ...jsonio import valid_text
from ...seal import Sealer

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (id TEXT PRIMARY KEY, created REAL, response TEXT, history TEXT);
CREATE TABLE IF NOT EXISTS response_inputs (id TEXT PRIMARY KEY, items TEXT);
CREATE TABLE IF NOT EXISTS response_items (id TEXT PRIMARY KEY, response_id TEXT, item TEXT);
CREATE INDEX IF NOT EXISTS response_items_by_response ON response_items (response_id);
"""


class ResponseStore:
    durable = False  # True: `put` returns a write the answer waits for (a shared database)

    def __init__(self, path: Path, max_items: int = 1000) -> None:
        self.path = path
        self.max_items = max_items
        self.sealer = Sealer(path.parent)
        self._lock = threading.Lock()
        self._db = open_private_db(path, timeout=5, setup=_SCHEMA)

    async def ready(self) -> None:
        """Before a request uses the store (a shared store connects and adopts the shared sealing key)."""

    async def load(self, ids: list[str]) -> None:
        """Responses and items by id, made readable by the synchronous reads (a shared store fetches the ones
        it does not have locally)."""

    def put(self, response: dict, history: list[dict] | dict, inputs: list[dict] | None = None) -> Awaitable[None] | None:
        """Stored here at once; a shared store returns its database write, which the answer waits for."""
        self._keep(*rows_of(response, history, inputs))
        return None

    def _keep(self, rid: str, created: float, response: str, history: str, inputs: str,
              items: list[tuple[str, str, str]]) -> None:
        with self._lock, transaction(self._db):
            self._db.execute("INSERT OR REPLACE INTO responses VALUES (?,?,?,?)", (rid, created, response, history))
            self._db.execute("INSERT OR REPLACE INTO response_inputs VALUES (?,?)", (rid, inputs))
            self._db.executemany("INSERT OR REPLACE INTO response_items VALUES (?,?,?)", items)
            self._db.execute("DELETE FROM responses WHERE id NOT IN (SELECT id FROM responses ORDER BY created DESC "
                             "LIMIT ?)", (self.max_items,))
            self._db.execute("DELETE FROM response_inputs WHERE id NOT IN (SELECT id FROM responses)")
            self._db.execute("DELETE FROM response_items WHERE response_id NOT IN (SELECT id FROM responses)")

    def _get(self, table: str, column: str, key: str, id: str):
        id = valid_text(id)  # a client's id with a lone surrogate ("\ud83d") is no stored id: not found, no 500
        with self._lock:
            row = self._db.execute(f"SELECT {column} FROM {table} WHERE {key}=?", (id,)).fetchone()
        return json.loads(row[0]) if row else None

    def get(self, id: str) -> dict | None:
        return self._get("responses", "response", "id", id)

    def history(self, id: str) -> dict | list[dict] | None:
        return self._get("responses", "history", "id", id)

    def continuation(self, body: dict) -> dict:
        """responses.translate()'s history arguments for the body's `previous_response_id` (a 400 when the
        gateway has no such response)."""
        prev = body.get("previous_response_id")
        if prev is None:
            return {}
        stored = self.history(prev) if isinstance(prev, str) else None
        if isinstance(stored, dict) and isinstance(stored.get("items"), list):
            return {"history": stored["items"]}
        if isinstance(stored, list):  # stored by an older gateway: chat messages
            return {"chat_history": stored}
        raise GatewayError(400, f"Previous response with id '{prev}' not found.", param="previous_response_id",
                           code="previous_response_not_found")

    def inputs(self, id: str) -> list[dict] | None:
        """The input items of a stored response (None: no such response)."""
        if self.get(id) is None:
            return None
        return self._get("response_inputs", "items", "id", id) or []

    def item(self, item_id: str) -> dict | None:
        """An input or output item of a stored response, by its id (for `item_reference`)."""
        return self._get("response_items", "item", "id", item_id)

    def has(self, id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM responses WHERE id=?", (id,)).fetchone() is not None

    def has_item(self, id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM response_items WHERE id=?", (id,)).fetchone() is not None

    def delete(self, id: str) -> bool:
        id = valid_text(id)
        with self._lock, transaction(self._db):
            gone = self._db.execute("DELETE FROM responses WHERE id=?", (id,)).rowcount > 0
            self._db.execute("DELETE FROM response_inputs WHERE id=?", (id,))
            self._db.execute("DELETE FROM response_items WHERE response_id=?", (id,))
        return gone


def rows_of(response: dict, history: list[dict] | dict, inputs: list[dict] | None
            ) -> tuple[str, float, str, str, str, list[tuple[str, str, str]]]:
    """What one stored response is, as rows: id, created, the response, its history, its input items, and
    (item id, response id, item) for every input and output item with an id."""
    rid = response["id"]
    items = [i for i in (inputs or []) + list(response.get("output") or [])
             if isinstance(i, dict) and isinstance(i.get("id"), str)]
    return (rid, time.time(), json.dumps(response), json.dumps(history), json.dumps(inputs or []),
            [(valid_text(i["id"]), rid, json.dumps(i)) for i in items])  # a client id may hold a lone surrogate


def wanted_ids(body: dict) -> list[str]:
    """The stored responses and items a Responses body refers to (previous_response_id, item_reference)."""
    ids = [body["previous_response_id"]] if isinstance(body.get("previous_response_id"), str) else []
    items = body.get("input")
    if isinstance(items, list):
        ids += [i["id"] for i in items if isinstance(i, dict) and i.get("type") == "item_reference"
                and isinstance(i.get("id"), str)]
    return [valid_text(i) for i in ids]  # a database can look up no lone surrogate
