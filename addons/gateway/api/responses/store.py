"""The Responses API's state in the gateway's state folder: stored Responses (`previous_response_id`,
`GET /v1/responses/{id}`, its `input_items`, `item_reference`s to their items) in SQLite, bounded, 0600;
and the key that seals `encrypted_content` (seal.py, `seal.key` beside the database).

Reads are point lookups on the caller's thread. A write (a stored response and the trim that keeps the
store at `max_items`) runs in a worker thread on a connection of its own (WAL: readers never wait for it)
and costs the same at any size: the oldest responses by insertion (rowid order) go, as many as the new
one brings over the cap. `put` returns the write, which the answer waits for: a response the client is
told about is on disk. The folder full or read-only (auth/storage.py): StateUnavailable, refused by
`prepare` before a request's upstream call when it is known (or free space is below LOCAL_MIN_FREE)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from ...auth.state import open_private_db, transaction
from ...auth.storage import check_local, local_failure, local_health
from ...errors import GatewayError
from ...jsonio import valid_text
from ...seal import Sealer

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (id TEXT PRIMARY KEY, created REAL, response TEXT, history TEXT);
CREATE TABLE IF NOT EXISTS response_inputs (id TEXT PRIMARY KEY, items TEXT);
CREATE TABLE IF NOT EXISTS response_items (id TEXT PRIMARY KEY, response_id TEXT, item TEXT);
CREATE INDEX IF NOT EXISTS response_items_by_response ON response_items (response_id);
CREATE TABLE IF NOT EXISTS chat_completions (id TEXT PRIMARY KEY, created REAL, model TEXT, metadata TEXT,
    completion TEXT, messages TEXT);
"""
Rows = tuple[str, float, str, str, str, list[tuple[str, str, str]]]
T = TypeVar("T")


class ResponseStore:
    def __init__(self, path: Path, max_items: int = 1000) -> None:
        self.path = path
        self.max_items = max_items
        self.sealer = Sealer(path.parent)
        self.health = local_health(path.parent)
        self._lock = threading.Lock()  # the reading connection
        self._wlock = threading.Lock()  # the writing connection, and the count
        self._db: sqlite3.Connection | None = None
        self._wdb: sqlite3.Connection | None = None
        self._count = 0  # responses in the file (the writer keeps it: a trim needs no count(*))

    def _open_file(self) -> sqlite3.Connection:
        try:
            return open_private_db(self.path, timeout=5, setup=_SCHEMA)
        except Exception as e:
            raise self._fault(e) from None

    def _fault(self, e: Exception) -> Exception:
        """A failure of the folder as StateUnavailable (its outage said once), anything else as it is."""
        return local_failure(self.path.parent, e) or e

    def _reader(self) -> sqlite3.Connection:
        """The reading connection, opened at first use (the caller holds `_lock`)."""
        if self._db is None:
            self._db = self._open_file()
        return self._db

    def _writer(self) -> sqlite3.Connection:
        """The writing connection, opened at first use (the caller holds `_wlock`)."""
        if self._wdb is None:
            db = self._open_file()
            self._count = db.execute("SELECT count(*) FROM responses").fetchone()[0]
            self._wdb = db
        return self._wdb

    def start(self) -> None:
        """At the gateway's start (a shared store connects and adopts the shared sealing key)."""

    async def ready(self) -> None:
        """Before a request uses the store (a shared store connects and adopts the shared sealing key)."""

    async def prepare(self, body: dict, *, stores: bool = True) -> None:
        """Before a Responses request is translated (so before its upstream call): the responses and items it
        refers to made readable, and, when it will be stored (`stores` and `store` not false), the store
        known to take it: StateUnavailable now rather than after Qwen answered."""
        ids = wanted_ids(body)
        if ids or (stores and body.get("store") is not False):
            await self.check()
        await self.load(ids)

    async def check(self) -> None:
        """StateUnavailable when the folder is known to be full or unwritable, has less than LOCAL_MIN_FREE
        free (one statvfs), or cannot hold the store's file or its sealing key."""
        check_local(self.path.parent)
        try:
            self.sealer.ready()
        except OSError as e:
            raise self._fault(e) from None
        with self._lock:
            self._reader()

    async def load(self, ids: list[str]) -> None:
        """Responses and items by id, made readable by the synchronous reads (a shared store fetches the ones
        it does not have locally)."""

    def put(self, response: dict, history: list[dict] | dict, inputs: list[dict] | None = None) -> Awaitable[None] | None:
        """Stored by a worker thread: the write, which the answer waits for (None without an event loop: stored
        at once)."""
        return self._write(rows_of(response, history, inputs))

    def _write(self, rows: Rows) -> asyncio.Future[None] | None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._keep(*rows)
            return None
        write = loop.run_in_executor(None, lambda: self._keep(*rows))
        write.add_done_callback(retrieved)
        return write

    def _keep(self, rid: str, created: float, response: str, history: str, inputs: str,
              items: list[tuple[str, str, str]]) -> None:
        """One response in, and the oldest out beyond max_items: work that does not grow with the store."""
        with self._wlock:
            db = self._writer()
            try:
                new = db.execute("SELECT 1 FROM responses WHERE id=?", (rid,)).fetchone() is None
                count = self._count + new
                with transaction(db):
                    db.execute("INSERT OR REPLACE INTO responses VALUES (?,?,?,?)", (rid, created, response, history))
                    db.execute("INSERT OR REPLACE INTO response_inputs VALUES (?,?)", (rid, inputs))
                    db.executemany("INSERT OR REPLACE INTO response_items VALUES (?,?,?)", items)
                    if count > self.max_items:
                        count -= self._drop(db, [r[0] for r in db.execute(
                            "SELECT id FROM responses ORDER BY rowid LIMIT ?", (count - self.max_items,))])
            except Exception as e:
                raise self._fault(e) from None
            self._count = count
        self.health.ok()

    @staticmethod
    def _drop(db: sqlite3.Connection, ids: list[str]) -> int:
        """Responses gone with their inputs and items; how many there were."""
        gone = 0
        for rid in ids:
            gone += db.execute("DELETE FROM responses WHERE id=?", (rid,)).rowcount
            db.execute("DELETE FROM response_inputs WHERE id=?", (rid,))
            db.execute("DELETE FROM response_items WHERE response_id=?", (rid,))
        return gone

    def committed(self, work: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """`work(db)` in one transaction on the writing connection, run by a worker thread (another table of
        the folder's database: stored chat completions); its result, awaited by the caller."""
        write = asyncio.get_running_loop().run_in_executor(None, self._commit, work)
        write.add_done_callback(retrieved)
        return write

    def _commit(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._wlock:
            db = self._writer()
            try:
                with transaction(db):
                    result = work(db)
            except Exception as e:
                raise self._fault(e) from None
        self.health.ok()
        return result

    def read(self, sql: str, args: tuple = ()) -> list[tuple]:
        """The rows of one query on the reading connection (another table of the folder's database)."""
        with self._lock:
            try:
                return self._reader().execute(sql, args).fetchall()
            except Exception as e:
                raise self._fault(e) from None

    def _get(self, table: str, column: str, key: str, id: str):
        id = valid_text(id)  # a client's id with a lone surrogate ("\ud83d") is no stored id: not found, no 500
        with self._lock:
            row = self._reader().execute(f"SELECT {column} FROM {table} WHERE {key}=?", (id,)).fetchone()
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
            return self._reader().execute("SELECT 1 FROM responses WHERE id=?", (id,)).fetchone() is not None

    def has_item(self, id: str) -> bool:
        with self._lock:
            return self._reader().execute("SELECT 1 FROM response_items WHERE id=?", (id,)).fetchone() is not None

    def delete(self, id: str) -> bool:
        """A client's DELETE (rare, one row: on the caller's thread)."""
        id = valid_text(id)  # a path with a lone surrogate names no stored response
        with self._wlock:
            db = self._writer()
            try:
                with transaction(db):
                    gone = self._drop(db, [id])
            except Exception as e:
                raise self._fault(e) from None
            self._count -= gone
        return gone > 0


def retrieved(write: asyncio.Future[Any]) -> None:
    """A write's failure is read here too: one nobody awaits (a background run's) is not reported as
    "exception never retrieved"; whoever awaits it still gets it."""
    if not write.cancelled():
        write.exception()


def rows_of(response: dict, history: list[dict] | dict, inputs: list[dict] | None) -> Rows:
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
