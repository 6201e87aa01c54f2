"""Stored Responses shared by several gateways through PostgreSQL (`qwen_state_url`, auth/pg.py).

The local SQLite store stays the synchronous read path (`to_chat` reads it inline); PostgreSQL is the
truth shared by every gateway:
- `put` keeps the response locally and returns the database write (a task on the event loop): the answer
  waits for it, so a response a client was told about is committed before the client hears of it;
- `load` (awaited before a request is translated, and before `GET /v1/responses/{id}`) copies from the
  database the responses and items this gateway does not have;
- `ready` publishes this gateway's sealing key if the database has none, and adopts the database's.
The database away: StateUnavailable (503 `state_unavailable`) from `ready`, so from `prepare` before a
request's upstream call, from `load` and from the write (auth/pg.py says the outage once)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from ...auth.pg import Database, unavailable
from ...auth.storage import StateUnavailable
from ...jsonio import valid_text
from ...seal import load_key
from .store import ResponseStore, Rows, retrieved, rows_of

log = logging.getLogger("qwen")
COMPONENT = "responses"
STEPS = (
    "CREATE TABLE responses (id TEXT PRIMARY KEY, created DOUBLE PRECISION, response TEXT, history TEXT)",
    "CREATE INDEX responses_created ON responses (created)",
    "CREATE TABLE response_inputs (id TEXT PRIMARY KEY, items TEXT)",
    "CREATE TABLE response_items (id TEXT PRIMARY KEY, response_id TEXT, item TEXT)",
    "CREATE INDEX response_items_by_response ON response_items (response_id)",
    # secrets every gateway of the database shares (the sealing key): protect the database like the state folder
    "CREATE TABLE shared_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
SEAL_KEY = "seal.key"
TRIM_EVERY = 50  # puts between two trims of the shared table to max_items


def _upserts(table: str, columns: str, key: str) -> str:
    names = [c.strip() for c in columns.split(",")]
    sets = ", ".join(f"{c}=EXCLUDED.{c}" for c in names if c != key)
    return (f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(names))}) "
            f"ON CONFLICT ({key}) DO UPDATE SET {sets}")


_PUT_RESPONSE = _upserts("responses", "id, created, response, history", "id")
_PUT_INPUTS = _upserts("response_inputs", "id, items", "id")
_PUT_ITEM = _upserts("response_items", "id, response_id, item", "id")
_TRIM = ("DELETE FROM responses WHERE id IN (SELECT id FROM responses ORDER BY created DESC OFFSET %s)",
         "DELETE FROM response_inputs WHERE id NOT IN (SELECT id FROM responses)",
         "DELETE FROM response_items WHERE response_id NOT IN (SELECT id FROM responses)")


def _started(task: asyncio.Task) -> None:
    """The start's failure: the database away is said by its Health; anything else here, once."""
    failure = None if task.cancelled() else task.exception()
    if failure is not None and not isinstance(failure, StateUnavailable):
        log.warning("qwen: the shared Responses store could not start: %s: %s", type(failure).__name__, failure)


class SharedResponseStore(ResponseStore):
    def __init__(self, path: Path, db: Database, max_items: int = 1000) -> None:
        super().__init__(path, max_items)
        self.db = db
        self._ready: asyncio.Task | None = None
        self._puts = 0

    def start(self) -> None:
        """Connect and adopt the shared sealing key now (the gateway's start), not at the first request; again
        when the database comes back if it could not then."""
        loop = asyncio.get_running_loop()
        self.db.health.when_back(self.start, loop)
        if self._ready is None or (self._ready.done() and not self._adopted()):
            self._ready = loop.create_task(self._open(), name="qwen: shared responses")
            self._ready.add_done_callback(_started)

    async def ready(self) -> None:
        """Connected, migrated, the shared sealing key adopted; StateUnavailable when the database cannot be
        used (tried again by the next request; at once while it is known to be away)."""
        self.db.available()
        if self._ready is None or (self._ready.done() and not self._adopted()):
            self._ready = asyncio.get_running_loop().create_task(self._open(), name="qwen: shared responses")
            self._ready.add_done_callback(retrieved)
        await asyncio.shield(self._ready)

    def _adopted(self) -> bool:
        """`ready` has succeeded once: the shared sealing key is this gateway's."""
        task = self._ready
        return task is not None and task.done() and not task.cancelled() and task.exception() is None

    async def _open(self) -> None:
        try:
            await self.db.amigrate(COMPONENT, STEPS)
            mine = base64.b64encode(await asyncio.to_thread(load_key, self.path.parent)).decode()
            await self.db.execute("INSERT INTO shared_secrets VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                                  (SEAL_KEY, mine))
            rows = await self.db.fetch("SELECT value FROM shared_secrets WHERE name=%s", (SEAL_KEY,))
        except Exception as e:
            if unavailable(e):
                raise self.db.lost(e) from None
            raise
        self.sealer.adopt(base64.b64decode(rows[0][0]))

    async def check(self) -> None:
        """The database (connected and ready) and the local copy (what `to_chat` reads) both usable."""
        await self.ready()
        await super().check()

    def put(self, response: dict, history: list[dict] | dict, inputs: list[dict] | None = None) -> Awaitable[None] | None:
        rows = rows_of(response, history, inputs)
        local = self._write(rows)  # the local copy, in a thread; the database's commit is what is awaited
        self._puts += 1
        trim = self._puts % TRIM_EVERY == 0
        return self.db.background(self._put(rows, trim, local), "qwen: store a response")

    async def _put(self, rows: Rows, trim: bool, local: Awaitable[None] | None) -> None:
        rid, created, response, history, inputs, items = rows

        async def write(conn: Any) -> None:
            async with conn.transaction():
                await conn.execute(_PUT_RESPONSE, (rid, created, response, history))
                await conn.execute(_PUT_INPUTS, (rid, inputs))
                if items:
                    async with conn.cursor() as cur:
                        await cur.executemany(_PUT_ITEM, items)
            if trim:
                async with conn.transaction():
                    await conn.execute(_TRIM[0], (self.max_items,))
                    for sql in _TRIM[1:]:
                        await conn.execute(sql)

        try:
            await self.db.run(write)
        except Exception:  # not committed: not found here either
            if local is not None:
                with contextlib.suppress(Exception):
                    await local
            with contextlib.suppress(Exception):
                await asyncio.to_thread(ResponseStore.delete, self, rid)
            raise
        if local is not None:  # committed: a local copy the folder refused is fetched again from the database
            with contextlib.suppress(Exception):
                await local

    async def load(self, ids: list[str]) -> None:
        if not ids and self._adopted():
            return  # nothing to fetch, the shared sealing key already in use: the database is not needed
        await self.ready()
        missing = [i for i in ids if not self.has(i) and not self.has_item(i)]
        if not missing:
            return
        owners = await self.db.fetch("SELECT DISTINCT response_id FROM response_items WHERE id = ANY(%s)", (missing,))
        wanted = list({*missing, *(r[0] for r in owners)})
        found = await self.db.fetch("SELECT r.id, r.created, r.response, r.history, i.items FROM responses r "
                                    "LEFT JOIN response_inputs i ON i.id = r.id WHERE r.id = ANY(%s)", (wanted,))
        if not found:
            return
        items = await self.db.fetch("SELECT id, response_id, item FROM response_items WHERE response_id = ANY(%s)",
                                    ([r[0] for r in found],))
        copies: list[Rows] = [(rid, created, response, history, inputs or "[]", [i for i in items if i[1] == rid])
                              for rid, created, response, history, inputs in found]
        await asyncio.to_thread(self._keep_all, copies)

    def _keep_all(self, copies: list[Rows]) -> None:
        for rows in copies:
            self._keep(*rows)

    def delete(self, id: str) -> bool:
        id = valid_text(id)  # a path with a lone surrogate names no stored response
        gone = super().delete(id)
        self.db.background(self._delete(id), "qwen: delete a response")
        return gone

    async def _delete(self, id: str) -> None:
        async def delete(conn: Any) -> None:
            async with conn.transaction():
                await conn.execute("DELETE FROM responses WHERE id=%s", (id,))
                await conn.execute("DELETE FROM response_inputs WHERE id=%s", (id,))
                await conn.execute("DELETE FROM response_items WHERE response_id=%s", (id,))

        await self.db.run(delete)
