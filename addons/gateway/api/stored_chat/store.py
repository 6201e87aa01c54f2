"""Stored chat completions in the state folder: a table of the Responses store's SQLite file (its connections,
its worker-thread writes, its storage health: a full or read-only folder is StateUnavailable, 503
`state_unavailable`), bounded like it (the oldest go beyond `max_items`).

A write (a stored completion, an update, a delete) runs in a worker thread and is awaited: a completion the
client is told about is on disk. Reads are point lookups on the caller's thread, except the list, which reads
every row's id, model and metadata (at most `max_items`) in a thread."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Awaitable

from ...jsonio import valid_text
from ..responses.store import ResponseStore
from .records import Row, shown


class ChatStore:
    def __init__(self, base: ResponseStore, max_items: int = 1000) -> None:
        self.base = base
        self.max_items = max_items
        self._count: int | None = None  # rows in the table (the writer keeps it, under the base's write lock)

    async def check(self) -> None:
        """Before a `store: true` request goes upstream: StateUnavailable when the completion could not be
        kept (the folder full, read-only, or known to be down)."""
        await self.base.check()

    def put(self, row: Row) -> Awaitable[None]:
        """Stored by a worker thread: the write, which the answer waits for."""
        return self.base.committed(lambda db: self._keep(db, row))

    def _keep(self, db: sqlite3.Connection, row: Row) -> None:
        """One completion in, and the oldest out beyond max_items (in the write's transaction)."""
        if self._count is None:
            self._count = db.execute("SELECT count(*) FROM chat_completions").fetchone()[0]
        new = db.execute("SELECT 1 FROM chat_completions WHERE id=?", (row.id,)).fetchone() is None
        db.execute("INSERT OR REPLACE INTO chat_completions VALUES (?,?,?,?,?,?)",
                   (row.id, row.created, row.model, row.metadata, row.completion, row.messages))
        count = self._count + new
        if count > self.max_items:
            count -= db.execute("DELETE FROM chat_completions WHERE id IN (SELECT id FROM chat_completions "
                                "ORDER BY rowid LIMIT ?)", (count - self.max_items,)).rowcount
        self._count = count

    async def get(self, id: str) -> dict | None:
        """The completion (with its metadata), None when none is stored under `id`."""
        rows = self.base.read("SELECT completion, metadata FROM chat_completions WHERE id=?", (valid_text(id),))
        return shown(*rows[0]) if rows else None

    async def messages(self, id: str) -> list[dict] | None:
        rows = self.base.read("SELECT messages FROM chat_completions WHERE id=?", (valid_text(id),))
        return json.loads(rows[0][0]) if rows else None

    async def index(self) -> list[tuple]:
        """(id, model, metadata) of every stored completion, oldest first."""
        return await asyncio.to_thread(self.base.read, "SELECT id, model, metadata FROM chat_completions "
                                                       "ORDER BY rowid")

    async def completions(self, ids: list[str]) -> dict[str, dict]:
        """The completions (with their metadata) of `ids` (a page: at most 100), by id."""
        rows = self.base.read(f"SELECT id, completion, metadata FROM chat_completions WHERE id IN "
                              f"({','.join('?' * len(ids))})", tuple(ids))
        return {rid: shown(completion, metadata) for rid, completion, metadata in rows}

    async def update(self, id: str, metadata: dict[str, str]) -> bool:
        """The metadata replaced; False when none is stored under `id`."""
        def write(db: sqlite3.Connection) -> bool:
            return db.execute("UPDATE chat_completions SET metadata=? WHERE id=?",
                              (json.dumps(metadata), valid_text(id))).rowcount > 0
        return await self.base.committed(write)

    async def delete(self, id: str) -> bool:
        def write(db: sqlite3.Connection) -> bool:
            gone = db.execute("DELETE FROM chat_completions WHERE id=?", (valid_text(id),)).rowcount
            if self._count is not None:
                self._count -= gone
            return gone > 0
        return await self.base.committed(write)
