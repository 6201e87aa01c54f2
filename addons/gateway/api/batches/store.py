"""Who owns each file and batch the gateway made on Qwen, and on which account: the state folder's
`batches.sqlite3` (storage/sqlite.py), so that a restart forgets no owner and bills no batch twice. Ids only, the
client's model name and the account's name: nothing of a prompt, no key.

A file or batch another named key made, or none made through this gateway, is not found (404), as OpenAI answers
an id of another organisation's."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ...storage.health import check_local, local_failure
from ...storage.sqlite import open_private_db

T = TypeVar("T")

FILENAME = "batches.sqlite3"
SCHEMA = """CREATE TABLE IF NOT EXISTS objects (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, owner TEXT NOT NULL, account TEXT NOT NULL, model TEXT NOT NULL,
    upstream_model TEXT NOT NULL, billed INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS objects_owner ON objects (owner, kind, created);"""
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


class BatchStore:
    """Opened at first use; a state folder that cannot be used now raises the storage's StateUnavailable (the
    client's 503 `state_unavailable`), logged once per outage by storage/health.py."""

    def __init__(self, state_dir: Path) -> None:
        self.folder = state_dir
        self.path = state_dir / FILENAME
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def ready(self) -> None:
        """Before Qwen is asked to make something: the folder is known to take the owner's row."""
        check_local(self.folder)
        self._run(lambda db: None)

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = open_private_db(self.path, timeout=5.0, setup=SCHEMA)
                return work(self._conn)
            except (OSError, sqlite3.Error) as e:
                outage = local_failure(self.folder, e)
                if outage is None:
                    raise
                raise outage from None

    def put(self, record: Record) -> None:
        self._run(lambda db: db.execute("INSERT OR IGNORE INTO objects VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                        (record.id, record.kind, record.owner, record.account, record.model,
                                         record.upstream_model, int(record.billed), time.time())))

    def get(self, oid: str, owner: str, kind: str) -> Record | None:
        """`oid` if `owner` made it (a file: also a batch's results file of theirs)."""
        row = self._run(lambda db: db.execute("SELECT id, kind, owner, account, model, upstream_model, billed FROM "
                                              "objects WHERE id = ? AND owner = ? AND kind = ?",
                                              (oid, owner, kind)).fetchone())
        if row is None:
            return None
        oid, kind, owner, account, model, upstream_model, billed = row
        return Record(oid, kind, owner, account, model, upstream_model, bool(billed))

    def accounts(self, owner: str, kind: str) -> list[str]:
        """The accounts holding `owner`'s objects of `kind`, the newest's first."""
        rows = self._run(lambda db: db.execute("SELECT account, MAX(created) AS last FROM objects WHERE owner = ? AND "
                                               "kind = ? GROUP BY account ORDER BY last DESC", (owner, kind)).fetchall())
        return [r[0] for r in rows]

    def owned(self, owner: str, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        rows = self._run(lambda db: db.execute(f"SELECT id FROM objects WHERE owner = ? AND id IN ({marks})",
                                               (owner, *ids)).fetchall())
        return {r[0] for r in rows}

    def claim_bill(self, oid: str) -> bool:
        """True once per batch: the caller bills it (and `unbill`s it if it could not)."""
        return self._run(lambda db: db.execute("UPDATE objects SET billed = 1 WHERE id = ? AND billed = 0",
                                               (oid,)).rowcount) == 1

    def unbill(self, oid: str) -> None:
        self._run(lambda db: db.execute("UPDATE objects SET billed = 0 WHERE id = ?", (oid,)))

    def forget(self, oid: str) -> None:
        self._run(lambda db: db.execute("DELETE FROM objects WHERE id = ?", (oid,)))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
