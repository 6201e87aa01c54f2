"""Who owns each file and batch the gateway made on Qwen, and on which account: the state folder's
`batches.sqlite3` (storage/sqlite.py), or with `qwen_state_url` the shared PostgreSQL database (storage/pg.py: a batch
made through one gateway is found through the others), so that a restart forgets no owner and bills no results file
twice.
Ids only, the client's model name and the account's name: nothing of a prompt, no key; a file's and its batch's
`advice` (api/batches/advice.py: counts and prices per model, as JSON), added by a migration that a file or database of an
older gateway takes (its rows: no advice). A batch's `billed` is set
once its bill is in the ledger, or once it ended with nothing to bill (api/batches/bills.py); a results file's `billed` was set
by gateways before issue 60, which billed a batch by its results file.

A file or batch another named key made, or none made through this gateway, is not found (404), as OpenAI answers
an id of another organisation's. A storage that cannot be used now raises StateUnavailable (the client's 503
`state_unavailable`, logged once per outage by storage/health.py)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..storage.health import check_local, local_failure
from ..storage.pg import Database
from ..storage.sqlite import open_private_db

T = TypeVar("T")
FILENAME = "batches.sqlite3"
COLUMNS = "id, kind, owner, account, model, upstream_model, billed, advice"
TABLE = """CREATE TABLE {if_new} batch_objects (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, owner TEXT NOT NULL, account TEXT NOT NULL, model TEXT NOT NULL,
    upstream_model TEXT NOT NULL, billed INTEGER NOT NULL DEFAULT 0, created {real} NOT NULL)"""
INDEX = "CREATE INDEX {if_new} batch_objects_owner ON batch_objects (owner, kind, created)"
ADVICE = "ALTER TABLE batch_objects ADD COLUMN advice TEXT NOT NULL DEFAULT ''"  # batch advice (api/batches/advice.py)
SCHEMA = ";\n".join(s.format(if_new="IF NOT EXISTS", real="REAL") for s in (TABLE, INDEX)) + ";"
COMPONENT = "batches"
STEPS = (*(s.format(if_new="", real="DOUBLE PRECISION") for s in (TABLE, INDEX)), ADVICE)
FILE, BATCH = "file", "batch"


@dataclass(frozen=True, slots=True)
class Record:
    id: str
    kind: str  # FILE or BATCH
    owner: str  # the named client key ("": no named keys)
    account: str  # the key account that holds it on Qwen
    model: str  # the model the client named (its batch's lines)
    upstream_model: str  # the Qwen model they were sent as
    billed: bool = False
    advice: str = ""  # the batch advice of its lines (advice.Advice.dumps; "": none read)


def _record(row: tuple | None) -> Record | None:
    if row is None:
        return None
    oid, kind, owner, account, model, upstream_model, billed, advice = row
    return Record(oid, kind, owner, account, model, upstream_model, bool(billed), advice or "")


def _setup(db: sqlite3.Connection) -> None:
    """The file's table, and the advice's column in a file an older gateway made."""
    if "advice" not in {row[1] for row in db.execute("PRAGMA table_info(batch_objects)")}:
        db.execute(ADVICE)


class BatchStore:
    """The state folder's SQLite file, opened at first use."""

    MARK = "?"

    def __init__(self, state_dir: Path) -> None:
        self.folder = state_dir
        self.path = state_dir / FILENAME
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    async def ready(self) -> None:
        """Before Qwen is asked to make something: the storage is known to take the owner's row."""
        check_local(self.folder)
        self._run(lambda db: None)

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = open_private_db(self.path, timeout=5.0, setup=SCHEMA)
                    _setup(self._conn)
                return work(self._conn)
            except (OSError, sqlite3.Error) as e:
                outage = local_failure(self.folder, e)
                if outage is None:
                    raise
                raise outage from None

    async def execute(self, sql: str, args: tuple) -> int:
        return self._run(lambda db: db.execute(sql, args).rowcount)

    async def fetch(self, sql: str, args: tuple) -> list[tuple]:
        return self._run(lambda db: db.execute(sql, args).fetchall())

    async def put(self, r: Record) -> None:
        """`r`, unless its id is known already (an id is its first owner's)."""
        m = self.MARK
        await self.execute(f"INSERT INTO batch_objects (id, kind, owner, account, model, upstream_model, billed, "
                           f"advice, created) VALUES ({m}, {m}, {m}, {m}, {m}, {m}, {m}, {m}, {m}) ON CONFLICT (id) DO "
                           "NOTHING", (r.id, r.kind, r.owner, r.account, r.model, r.upstream_model, int(r.billed),
                                       r.advice, time.time()))

    async def get(self, oid: str, owner: str, kind: str) -> Record | None:
        """`oid` if `owner` made it (a file: also a batch's results file of theirs)."""
        m = self.MARK
        rows = await self.fetch(f"SELECT {COLUMNS} FROM batch_objects WHERE id = {m} AND owner = {m} AND kind = {m}",
                                (oid, owner, kind))
        return _record(rows[0] if rows else None)

    async def accounts(self, owner: str, kind: str) -> list[str]:
        """The accounts holding `owner`'s objects of `kind`, the newest's first."""
        m = self.MARK
        rows = await self.fetch(f"SELECT account, MAX(created) AS last FROM batch_objects WHERE owner = {m} AND "
                                f"kind = {m} GROUP BY account ORDER BY last DESC", (owner, kind))
        return [r[0] for r in rows]

    async def owned(self, owner: str, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        marks = ", ".join([self.MARK] * len(ids))
        rows = await self.fetch(f"SELECT id FROM batch_objects WHERE owner = {self.MARK} AND id IN ({marks})",
                                (owner, *ids))
        return {r[0] for r in rows}

    async def settled(self, oid: str) -> bool:
        """Marks a batch billed (or with nothing to bill): True for the one caller that marked it, whichever
        gateway asks first. Its bill is in the ledger before (api/batches/bills.py)."""
        return await self.execute(f"UPDATE batch_objects SET billed = 1 WHERE id = {self.MARK} AND billed = 0",
                                  (oid,)) == 1

    async def unsettled(self, most: int) -> list[Record]:
        """The batches not billed yet, the oldest first: what the gateway's own looks ask Qwen about (watch.py)."""
        m = self.MARK
        rows = await self.fetch(f"SELECT {COLUMNS} FROM batch_objects WHERE kind = {m} AND billed = 0 ORDER BY "
                                f"created LIMIT {m}", (BATCH, most))
        return [r for r in map(_record, rows) if r is not None]

    async def batches(self, most: int, owner: str | None = None) -> list[tuple[Record, float]]:
        """The newest `most` batches (of `owner`: None, every key's), each with when it was made: qwen-usage's."""
        m = self.MARK
        mine, args = (f" AND owner = {m}", (BATCH, owner, most)) if owner is not None else ("", (BATCH, most))
        rows = await self.fetch(f"SELECT {COLUMNS}, created FROM batch_objects WHERE kind = {m}{mine} ORDER BY "
                                f"created DESC LIMIT {m}", args)
        return [(r, float(row[-1])) for row in rows if (r := _record(row[:-1])) is not None]

    async def forget(self, oid: str) -> None:
        await self.execute(f"DELETE FROM batch_objects WHERE id = {self.MARK}", (oid,))

    async def aclose(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class SharedBatchStore(BatchStore):
    """The same rows in the shared PostgreSQL database (its table made by the schema migration at first use)."""

    MARK = "%s"

    def __init__(self, db: Database) -> None:
        self.db = db
        self._made = False

    async def ready(self) -> None:
        await self._schema()

    async def _schema(self) -> None:
        if not self._made:
            await self.db.amigrate(COMPONENT, STEPS)
            self._made = True

    async def execute(self, sql: str, args: tuple) -> int:
        await self._schema()
        return await self.db.execute(sql, args)

    async def fetch(self, sql: str, args: tuple) -> list[tuple]:
        await self._schema()
        return await self.db.fetch(sql, args)

    async def aclose(self) -> None:
        await self.db.aclose()
