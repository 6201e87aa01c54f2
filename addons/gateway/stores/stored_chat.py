"""Stored chat completions in the state folder: a table of the Responses store's SQLite file (its connections,
its worker-thread writes, its storage health: a full or read-only folder is StateUnavailable, 503
`state_unavailable`), each completion its owner's (the named key that stored it: every read, update and
delete names the owner), kept as the stored Responses are (responses_schema.py: per owner, its newest PER_KEY,
nothing older than MAX_AGE_S).

A write (a stored completion, an update, a delete) runs in a worker thread and is awaited: a completion the
client is told about is on disk. Reads are point lookups on the caller's thread, except the list, which reads
the owner's rows' id, model and metadata (at most `per_key`) in a thread."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Awaitable
from dataclasses import dataclass

from ..jsonio import valid_text
from .responses import ResponseStore
from .responses_schema import OldestDue, counts

# never over another owner's completion of the same id (ids are Qwen's: unique, but not the gateway's own)
_PUT = ("INSERT INTO chat_completions (id, created, model, metadata, completion, messages, owner) "
        "VALUES (?,?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET created=excluded.created, model=excluded.model, "
        "metadata=excluded.metadata, completion=excluded.completion, messages=excluded.messages "
        "WHERE owner = excluded.owner")


@dataclass(frozen=True)
class Row:
    """One stored completion as its store keeps it (JSON text: the same in SQLite and PostgreSQL), and whose
    it is (the named key that stored it; '' for none)."""

    id: str
    created: float
    model: str
    metadata: str
    completion: str
    messages: str
    owner: str


def shown(completion: str, metadata: str) -> dict:
    """A stored completion as the API shows it: with its metadata (as updated since)."""
    return {**json.loads(completion), "metadata": json.loads(metadata)}


class ChatStore:
    def __init__(self, base: ResponseStore, per_key: int | None = None) -> None:
        self.base = base
        self._per_key = per_key  # None: the base's (qwen_stored_per_key: as many completions as Responses)
        self._counts: dict[str, int] | None = None  # rows per owner (the writer keeps them, under the base's lock)
        base.forgotten.append(self._forget)
        self._expiry = OldestDue("chat_completions")

    @property
    def per_key(self) -> int:
        return self.base.per_key if self._per_key is None else self._per_key

    @per_key.setter
    def per_key(self, value: int) -> None:
        self._per_key = value

    def _forget(self, owner: str) -> None:
        """`owner`'s rows are gone (the base's writer deleted them, holding the lock that guards the counts)."""
        if self._counts is not None:
            self._counts.pop(owner, None)

    async def check(self) -> None:
        """Before a `store: true` request goes upstream: StateUnavailable when the completion could not be
        kept (the folder full, read-only, or known to be down)."""
        await self.base.check()

    def put(self, row: Row) -> Awaitable[None]:
        """Stored by a worker thread: the write, which the answer waits for."""
        return self.base.committed(lambda db: self._keep(db, row))

    def _keep(self, db: sqlite3.Connection, row: Row) -> None:
        """One completion in; the owner's oldest out beyond per_key, and a few past their age (in the write's
        transaction)."""
        if self._counts is None:
            self._counts = counts(db, "chat_completions")
            self._expiry.read(db)
        owner = row.owner
        new = db.execute("SELECT 1 FROM chat_completions WHERE id=?", (row.id,)).fetchone() is None
        db.execute(_PUT, (row.id, row.created, row.model, row.metadata, row.completion, row.messages, owner))
        changes = {owner: self._counts.get(owner, 0) + new}
        if changes[owner] > self.per_key:
            changes[owner] -= db.execute("DELETE FROM chat_completions WHERE id IN (SELECT id FROM chat_completions "
                                         "WHERE owner=? ORDER BY rowid LIMIT ?)",
                                         (owner, changes[owner] - self.per_key)).rowcount
        old, due = self._expiry.take(db, time.time())
        for cid, whose in old:
            gone = db.execute("DELETE FROM chat_completions WHERE id=?", (cid,)).rowcount
            changes[whose] = changes.get(whose, self._counts.get(whose, 0)) - gone
        self._counts.update(changes)  # (the base commits this write once `_keep` returns; a failure: StateUnavailable)
        self._expiry.due = due
        self._expiry.stored(row.created)

    async def get(self, id: str, owner: str) -> dict | None:
        """The owner's completion (with its metadata), None when the owner stored none under `id`."""
        rows = self.base.read("SELECT completion, metadata FROM chat_completions WHERE id=? AND owner=?",
                              (valid_text(id), owner))
        return shown(*rows[0]) if rows else None

    async def messages(self, id: str, owner: str) -> list[dict] | None:
        rows = self.base.read("SELECT messages FROM chat_completions WHERE id=? AND owner=?", (valid_text(id), owner))
        return json.loads(rows[0][0]) if rows else None

    async def index(self, owner: str) -> list[tuple]:
        """(id, model, metadata) of every completion the owner stored, oldest first."""
        return await asyncio.to_thread(self.base.read, "SELECT id, model, metadata FROM chat_completions "
                                                       "WHERE owner=? ORDER BY rowid", (owner,))

    async def completions(self, ids: list[str], owner: str) -> dict[str, dict]:
        """The owner's completions (with their metadata) of `ids` (a page: at most 100), by id."""
        rows = self.base.read(f"SELECT id, completion, metadata FROM chat_completions WHERE owner=? AND id IN "
                              f"({','.join('?' * len(ids))})", (owner, *ids))
        return {rid: shown(completion, metadata) for rid, completion, metadata in rows}

    async def update(self, id: str, metadata: dict[str, str], owner: str) -> bool:
        """The metadata replaced; False when the owner stored none under `id`."""
        def write(db: sqlite3.Connection) -> bool:
            return db.execute("UPDATE chat_completions SET metadata=? WHERE id=? AND owner=?",
                              (json.dumps(metadata), valid_text(id), owner)).rowcount > 0
        return await self.base.committed(write)

    async def delete(self, id: str, owner: str) -> bool:
        def write(db: sqlite3.Connection) -> bool:
            gone = db.execute("DELETE FROM chat_completions WHERE id=? AND owner=?", (valid_text(id), owner)).rowcount
            if self._counts is not None:
                self._counts[owner] = self._counts.get(owner, 0) - gone
            return gone > 0
        return await self.base.committed(write)
