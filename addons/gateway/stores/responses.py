"""The Responses API's state in the gateway's state folder: stored Responses (`previous_response_id`,
`GET /v1/responses/{id}`, its `input_items`, `item_reference`s to their items) in SQLite, 0600; and the key
that seals `encrypted_content` (seal.py, `seal.key` beside the database).

Each stored response is its owner's (the named key that stored it, '' for none: responses_schema.py): every
read and delete names the owner, and another key's response is found nowhere, as an id never stored.

Reads are point lookups on the caller's thread. A write (a stored response and the retention that keeps
its owner within PER_KEY and every owner within MAX_AGE_S, responses_schema.py) runs in a worker thread on a
connection of its own (WAL: readers never wait for it) and costs the same at any size: the owner's oldest
by insertion go, as many as the new one brings over the cap, and at most EXPIRE_PER_WRITE past their age.
`put` returns the write, which the answer waits for: a response the client is told about is on disk. The
folder full or read-only (storage/health.py): StateUnavailable, refused by `prepare` before a request's
upstream call when it is known (or free space is below LOCAL_MIN_FREE)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from ..errors import GatewayError
from ..jsonio import valid_text
from ..seal import Sealer
from ..storage.health import check_local, local_failure, local_health
from ..storage.sqlite import open_private_db, transaction
from .responses_rows import Part, Rows, input_place, listed, rows_of, size, wanted_ids
from .responses_schema import PER_KEY, TABLES, OldestDue, counts, forget_owner, migrate

__all__ = ["ResponseStore", "Rows", "previous_not_found", "retrieved", "rows_of", "wanted_ids"]

T = TypeVar("T")
LARGE_WRITE = 1 << 20  # bytes of one response from which the write-ahead log is emptied at once (not left that big)


class ResponseStore:
    def __init__(self, path: Path, per_key: int = PER_KEY) -> None:
        self.path = path
        self.per_key = per_key
        self.sealer = Sealer(path.parent)
        self.health = local_health(path.parent)
        self._lock = threading.Lock()  # the reading connection
        self._wlock = threading.Lock()  # the writing connection, and the count
        self._db: sqlite3.Connection | None = None
        self._wdb: sqlite3.Connection | None = None
        self._counts: dict[str, int] = {}  # responses per owner (the writer keeps them: a trim needs no count(*))
        self._expiry = OldestDue("responses")
        self.forgotten: list[Callable[[str], None]] = []  # told each owner forgotten (stored chat's counts)

    def _open_file(self) -> sqlite3.Connection:
        try:
            db = open_private_db(self.path, timeout=5, setup=TABLES)
            migrate(db)
            return db
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
            self._counts = counts(db, "responses")
            self._expiry.read(db)
            self._wdb = db
        return self._wdb

    def start(self) -> None:
        """At the gateway's start (a shared store connects and adopts the shared sealing key)."""

    async def ready(self) -> None:
        """Before a request uses the store (a shared store connects and adopts the shared sealing key)."""

    async def prepare(self, body: dict, owner: str, *, stores: bool = True) -> None:
        """Before a Responses request is translated (so before its upstream call): the responses and items it
        refers to (the owner's) made readable, and, when it will be stored (`stores` and `store` not false),
        the store known to take it: StateUnavailable now rather than after Qwen answered."""
        ids = wanted_ids(body)
        if ids or (stores and body.get("store") is not False):
            await self.check()
        await self.load(ids, owner)

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

    async def load(self, ids: list[str], owner: str) -> None:
        """The owner's responses and items by id, made readable by the synchronous reads (a shared store fetches
        the ones it does not have locally)."""

    def put(self, response: dict, history: Part, inputs: Part = None, *, owner: str) -> Awaitable[None] | None:
        """Stored for `owner` by a worker thread, which also makes its rows (responses_rows.py; `history` and
        `inputs` may be the functions that make them): the write, which the answer waits for (None without an
        event loop: stored at once)."""
        return self._write(lambda: rows_of(response, history, inputs, owner))

    def _write(self, rows: Callable[[], Rows]) -> asyncio.Future[None] | None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._keep(*rows())
            return None
        write = loop.run_in_executor(None, lambda: self._keep(*rows()))
        write.add_done_callback(retrieved)
        return write

    def _keep(self, rid: str, owner: str, created: float, response: str, history: str, inputs: str,
              items: list[tuple[str, str, str, str]]) -> None:
        """One response in; the owner's oldest out beyond per_key, and a few past their age: work that does not
        grow with the store."""
        with self._wlock:
            db = self._writer()
            try:
                new = db.execute("SELECT 1 FROM responses WHERE id=?", (rid,)).fetchone() is None
                counts = {owner: self._counts.get(owner, 0) + new}
                with transaction(db):
                    db.execute("INSERT OR REPLACE INTO responses (id, created, response, history, owner) "
                               "VALUES (?,?,?,?,?)", (rid, created, response, history, owner))
                    db.execute("INSERT OR REPLACE INTO response_inputs VALUES (?,?)", (rid, inputs))
                    db.executemany("INSERT OR REPLACE INTO response_items (id, response_id, item, owner) "
                                   "VALUES (?,?,?,?)", items)
                    if counts[owner] > self.per_key:
                        counts[owner] -= self._drop(db, [r[0] for r in db.execute(
                            "SELECT id FROM responses WHERE owner=? ORDER BY rowid LIMIT ?",
                            (owner, counts[owner] - self.per_key))])
                    old, due = self._expiry.take(db, time.time())
                    for rid_old, whose in old:
                        counts[whose] = counts.get(whose, self._counts.get(whose, 0)) - self._drop(db, [rid_old])
                if size((rid, owner, created, response, history, inputs, items)) > LARGE_WRITE:
                    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # else the log stays as large as this write
            except Exception as e:
                raise self._fault(e) from None
            self._counts.update(counts)
            self._expiry.due = due
            self._expiry.stored(created)
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

    def forget_owner(self, owner: str) -> None:
        """Every stored object of `owner` gone from the folder (its named key was deleted: a key added later
        under the name starts with none), in a worker thread; the shared database's rows go with `qwen-keys`."""
        def work(db: sqlite3.Connection) -> None:
            forget_owner(db, owner)
            self._counts.pop(owner, None)
            for told in self.forgotten:
                told(owner)

        try:
            self.committed(work)
        except RuntimeError:  # no event loop (a test): at once
            self._commit(work)

    def read(self, sql: str, args: tuple = ()) -> list[tuple]:
        """The rows of one query on the reading connection (another table of the folder's database)."""
        with self._lock:
            try:
                return self._reader().execute(sql, args).fetchall()
            except Exception as e:
                raise self._fault(e) from None

    def _one(self, sql: str, *args: str):
        args = tuple(valid_text(a) for a in args)  # a client's id with a lone surrogate is no stored id: no 500
        with self._lock:
            row = self._reader().execute(sql, args).fetchone()
        return json.loads(row[0]) if row else None

    def get(self, id: str, owner: str) -> dict | None:
        """The owner's stored response (None: none stored under `id`, or another key's)."""
        return self._one("SELECT response FROM responses WHERE id=? AND owner=?", id, owner)

    def history(self, id: str, owner: str) -> dict | list[dict] | None:
        return self._one("SELECT history FROM responses WHERE id=? AND owner=?", id, owner)

    def continuation(self, body: dict, owner: str) -> dict:
        """responses.translate()'s history arguments for the body's `previous_response_id` (a 400 when the
        owner has no such response: another key's is not found, as one never stored), and `native`: where
        Model Studio's own Responses API holds the conversation, when it answered (api/responses/native.py)."""
        prev = body.get("previous_response_id")
        if prev is None:
            return {}
        stored = self.history(prev, owner) if isinstance(prev, str) else None
        if isinstance(stored, dict) and isinstance(stored.get("items"), list):  # and where Qwen's own API holds it
            return {"history": stored["items"], **({"native": stored["native"]} if "native" in stored else {})}
        if isinstance(stored, list):  # stored by an older gateway: chat messages
            return {"chat_history": stored}
        raise previous_not_found(prev)

    def inputs(self, id: str, owner: str) -> list[dict] | None:
        """The input items of the owner's stored response, as the spec lists them (None: no such response)."""
        if not self.has(id, owner):
            return None
        return [listed(i, id, n) for n, i in enumerate(self._one("SELECT items FROM response_inputs WHERE id=?", id)
                                                          or [])]

    def item(self, item_id: str, owner: str) -> dict | None:
        """An input or output item of one of the owner's stored responses, by its id (for `item_reference`): its
        own row, or the place in its response's input that its `input_id` names."""
        found = self._one("SELECT item FROM response_items WHERE owner=? AND id=?", owner, item_id)
        place = input_place(item_id) if found is None else None
        if place is not None and self.has(place[0], owner):
            kept = self._one("SELECT items FROM response_inputs WHERE id=?", place[0]) or []
            rid, n = place
            if n < len(kept) and listed(kept[n], rid, n)["id"] == item_id:
                return {**kept[n], "id": item_id}
        return found

    def has(self, id: str, owner: str) -> bool:
        with self._lock:
            return self._reader().execute("SELECT 1 FROM responses WHERE id=? AND owner=?",
                                          (id, owner)).fetchone() is not None

    def has_item(self, id: str, owner: str) -> bool:
        """Whether the item can be looked up here (an `input_id`: whether its response is here)."""
        with self._lock:
            if self._reader().execute("SELECT 1 FROM response_items WHERE owner=? AND id=?",
                                      (owner, id)).fetchone() is not None:
                return True
        place = input_place(id)
        return place is not None and self.has(place[0], owner)

    async def delete(self, id: str, owner: str) -> bool:
        """A client's DELETE of one of its own responses: True when it was there (a shared store: once the
        database's delete is committed)."""
        return self._delete_here(valid_text(id), owner)  # a path with a lone surrogate names no stored response

    def _delete_here(self, id: str, owner: str) -> bool:
        """The local file's copy gone (rare, one row: on the caller's thread)."""
        with self._wlock:
            db = self._writer()
            try:
                with transaction(db):
                    mine = db.execute("SELECT 1 FROM responses WHERE id=? AND owner=?", (id, owner)).fetchone()
                    gone = self._drop(db, [id]) if mine else 0
            except Exception as e:
                raise self._fault(e) from None
            self._counts[owner] = self._counts.get(owner, 0) - gone
        return gone > 0


def previous_not_found(prev: object) -> GatewayError:
    """OpenAI's 400 for a previous_response_id the caller cannot continue from (another key's included)."""
    return GatewayError(400, f"Previous response with id '{prev}' not found.", param="previous_response_id",
                        code="previous_response_not_found")


def retrieved(write: asyncio.Future[Any]) -> None:
    """A write's failure is read here too: one nobody awaits (a background run's) is not reported as
    "exception never retrieved"; whoever awaits it still gets it."""
    if not write.cancelled():
        write.exception()
