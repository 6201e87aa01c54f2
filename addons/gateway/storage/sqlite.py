"""The local state folder's SQLite files, for every store that keeps one (account state, the usage ledger, stored
Responses (stored chats among them), client keys, web pins): private, in WAL mode, and grouped statements in one commit.
Whether the folder can take a write now is health.py's."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path


def open_private_db(path: Path, *, timeout: float, setup: str = "") -> sqlite3.Connection:
    """A SQLite file only its owner can read (0600 in a 0700 folder), in WAL mode with synchronous=NORMAL
    (a commit costs no fsync; a power cut may lose the last moments, never the file), shared by threads
    (callers hold their own lock), after running `setup` (schema statements). The connection commits each
    statement on its own: group statements with `transaction`."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))  # SQLite gives -wal/-shm the same mode
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=timeout)
    # Switching to WAL needs a moment alone with the file and ignores the busy timeout: when two
    # processes open it at once, one gets "database is locked". Retry briefly.
    for attempt in range(50):
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            if setup:
                db.executescript(setup)
            return db
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e) or attempt == 49:
                db.close()
                raise
            time.sleep(0.05 + 0.01 * attempt)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One commit for many statements (in autocommit mode each statement would be a transaction of its own)."""
    db.execute("BEGIN")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
