"""Stored Responses shared by several gateways through PostgreSQL (`qwen_state_url`, storage/pg.py).

The local SQLite store stays the synchronous read path (`to_chat` reads it inline); PostgreSQL is the
truth shared by every gateway:
- `put` keeps the response locally and returns the database write (a task on the event loop): the answer
  waits for it, so a response a client was told about is committed before the client hears of it;
- `load` (awaited before a request is translated, and before `GET /v1/responses/{id}`) copies from the
  database the owner's responses and items this gateway does not have (another key's are never copied);
- retention as the local store's (responses_schema.py), per owner: every TRIM_EVERY of an owner's puts through
  a gateway, that owner's rows beyond PER_KEY go (the owner's index: its rows, never the table); every
  TRIM_EVERY puts, up to EXPIRE_BATCH rows past MAX_AGE_S (the age index). So an owner may hold up to
  TRIM_EVERY more per gateway for a while;
- `ready` publishes this gateway's sealing key if the database has none, and adopts the database's.
The database away: StateUnavailable (503 `state_unavailable`) from `ready`, so from `prepare` before a
request's upstream call, from `load` and from the write (storage/pg.py says the outage once)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..jsonio import valid_text
from ..seal import load_key
from ..storage.health import StateUnavailable
from ..storage.pg import Database, unavailable
from .responses import ResponseStore, retrieved
from .responses_rows import Part, Rows, input_place, rows_of
from .responses_schema import MAX_AGE_S, PER_KEY

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
    # whose each response is (the named key; '' for none, as every row stored before owners: responses_schema.py)
    "ALTER TABLE responses ADD COLUMN owner TEXT NOT NULL DEFAULT ''",
    "CREATE INDEX responses_by_owner ON responses (owner, created)",
    "ALTER TABLE response_items ADD COLUMN owner TEXT NOT NULL DEFAULT ''",
    # an item's id is the client's to choose: unique per owner
    "ALTER TABLE response_items DROP CONSTRAINT response_items_pkey, ADD PRIMARY KEY (owner, id)",
)
SEAL_KEY = "seal.key"
TRIM_EVERY = 50  # an owner's puts (through one gateway) between two trims of its rows to PER_KEY
EXPIRE_BATCH = 2 * TRIM_EVERY  # rows past MAX_AGE_S dropped every TRIM_EVERY puts: faster than they come


def _upserts(table: str, columns: str, key: str) -> str:
    """An insert that replaces the row of the same key, never one of another owner."""
    names = [c.strip() for c in columns.split(",")]
    keys = {k.strip() for k in key.split(",")} | {"owner"}
    sets = ", ".join(f"{c}=EXCLUDED.{c}" for c in names if c not in keys)
    return (f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(names))}) "
            f"ON CONFLICT ({key}) DO UPDATE SET {sets}" + (f" WHERE {table}.owner = EXCLUDED.owner"
                                                          if "owner" in names else ""))


_PUT_RESPONSE = _upserts("responses", "id, owner, created, response, history", "id")
_PUT_INPUTS = _upserts("response_inputs", "id, items", "id")
_PUT_ITEM = _upserts("response_items", "id, response_id, item, owner", "owner, id")
_TRIM_OWNER = ("DELETE FROM responses WHERE id IN (SELECT id FROM responses WHERE owner = %s "
               "ORDER BY created DESC OFFSET %s) RETURNING id")
_EXPIRE = ("DELETE FROM responses WHERE id IN (SELECT id FROM responses WHERE created < %s "
           "ORDER BY created LIMIT %s) RETURNING id")
_CHILDREN = ("DELETE FROM response_inputs WHERE id = ANY(%s)", "DELETE FROM response_items WHERE response_id = ANY(%s)")


async def _gone(conn: Any, sql: str, args: tuple) -> bool:
    """Responses deleted by `sql` (… RETURNING id), with their inputs and items; whether there were any."""
    ids = [r[0] for r in await (await conn.execute(sql, args)).fetchall()]
    for children in _CHILDREN if ids else ():
        await conn.execute(children, (ids,))
    return bool(ids)


def _started(task: asyncio.Task) -> None:
    """The start's failure: the database away is said by its Health; anything else here, once."""
    failure = None if task.cancelled() else task.exception()
    if failure is not None and not isinstance(failure, StateUnavailable):
        log.warning("qwen: the shared Responses store could not start: %s: %s", type(failure).__name__, failure)


class SharedResponseStore(ResponseStore):
    def __init__(self, path: Path, db: Database, per_key: int = PER_KEY) -> None:
        super().__init__(path, per_key)
        self.db = db
        self._ready: asyncio.Task | None = None
        self._puts = 0
        self._owner_puts: dict[str, int] = {}

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

    def put(self, response: dict, history: Part, inputs: Part = None, *, owner: str) -> Awaitable[None] | None:
        self._puts += 1
        self._owner_puts[owner] = self._owner_puts.get(owner, 0) + 1
        trim = self._owner_puts[owner] % TRIM_EVERY == 0
        expire = self._puts % TRIM_EVERY == 0
        return self.db.background(self._put(lambda: rows_of(response, history, inputs, owner), trim, expire),
                                  "qwen: store a response")

    async def _put(self, make: Callable[[], Rows], trim: bool, expire: bool) -> None:
        rows = await asyncio.to_thread(make)  # made by a worker thread, as the local store's
        local = self._write(lambda: rows)  # the local copy, in a thread; the database's commit is what is awaited
        rid, owner, created, response, history, inputs, items = rows

        async def write(conn: Any) -> None:
            async with conn.transaction():
                await conn.execute(_PUT_RESPONSE, (rid, owner, created, response, history))
                await conn.execute(_PUT_INPUTS, (rid, inputs))
                if items:
                    async with conn.cursor() as cur:
                        await cur.executemany(_PUT_ITEM, items)
            if trim:
                async with conn.transaction():
                    await _gone(conn, _TRIM_OWNER, (owner, self.per_key))
            if expire:
                async with conn.transaction():
                    await _gone(conn, _EXPIRE, (time.time() - MAX_AGE_S, EXPIRE_BATCH))

        try:
            await self.db.run(write)
        except Exception:  # not committed: not found here either
            if local is not None:
                with contextlib.suppress(Exception):
                    await local
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._delete_here, rid, owner)
            raise
        if local is not None:  # committed: a local copy the folder refused is fetched again from the database
            with contextlib.suppress(Exception):
                await local

    async def load(self, ids: list[str], owner: str) -> None:
        if not ids and self._adopted():
            return  # nothing to fetch, the shared sealing key already in use: the database is not needed
        await self.ready()
        missing = [i for i in ids if not self.has(i, owner) and not self.has_item(i, owner)]
        if not missing:
            return
        holders = await self.db.fetch("SELECT DISTINCT response_id FROM response_items WHERE owner = %s AND "
                                      "id = ANY(%s)", (owner, missing))
        places = [place[0] for place in map(input_place, missing) if place is not None]  # an input item's response
        wanted = list({*missing, *(r[0] for r in holders), *places})
        found = await self.db.fetch("SELECT r.id, r.created, r.response, r.history, i.items FROM responses r "
                                    "LEFT JOIN response_inputs i ON i.id = r.id WHERE r.owner = %s AND "
                                    "r.id = ANY(%s)", (owner, wanted))
        if not found:
            return
        items = await self.db.fetch("SELECT id, response_id, item, owner FROM response_items WHERE owner = %s AND "
                                    "response_id = ANY(%s)", (owner, [r[0] for r in found]))
        copies: list[Rows] = [(rid, owner, created, response, history, inputs or "[]",
                               [i for i in items if i[1] == rid]) for rid, created, response, history, inputs in found]
        await asyncio.to_thread(self._keep_all, copies)

    def _keep_all(self, copies: list[Rows]) -> None:
        for rows in copies:
            self._keep(*rows)

    async def delete(self, id: str, owner: str) -> bool:
        """Gone here and, before the answer, from the database: a GET that follows, through any gateway, finds
        nothing to copy back (the database away: StateUnavailable, the 503)."""
        id = valid_text(id)  # a path with a lone surrogate names no stored response
        here = self._delete_here(id, owner)

        async def delete(conn: Any) -> bool:
            async with conn.transaction():
                return await _gone(conn, "DELETE FROM responses WHERE id = %s AND owner = %s RETURNING id",
                                   (id, owner))

        return await self.db.run(delete) or here
