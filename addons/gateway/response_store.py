"""Stored Responses for `previous_response_id` and `GET /v1/responses/{id}`: SQLite, bounded, 0600."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from qwen_gateway.auth.state import open_private_db


class ResponseStore:
    def __init__(self, path: Path, max_items: int = 1000) -> None:
        self.max_items = max_items
        self._lock = threading.Lock()
        self._db = open_private_db(path, timeout=5, setup="CREATE TABLE IF NOT EXISTS responses (id TEXT PRIMARY "
                                                          "KEY, created REAL, response TEXT, history TEXT);")

    def put(self, response: dict, history: list[dict]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO responses VALUES (?,?,?,?)",
                             (response["id"], time.time(), json.dumps(response), json.dumps(history)))
            self._db.execute("DELETE FROM responses WHERE id NOT IN (SELECT id FROM responses ORDER BY created DESC "
                             "LIMIT ?)", (self.max_items,))

    def _get(self, id: str, column: str):
        with self._lock:
            row = self._db.execute(f"SELECT {column} FROM responses WHERE id=?", (id,)).fetchone()
        return json.loads(row[0]) if row else None

    def get(self, id: str) -> dict | None:
        return self._get(id, "response")

    def history(self, id: str) -> list[dict] | None:
        return self._get(id, "history")

    def delete(self, id: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM responses WHERE id=?", (id,)).rowcount > 0
