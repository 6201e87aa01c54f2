"""The local state folder's SQLite files, for every store that keeps one (account state, the usage ledger, stored
Responses (stored chats among them), client keys, web pins): private, in WAL mode, and grouped statements in one commit;
and a file read from a folder that cannot be written (`read_only_copy`). Whether the folder can take a write now is
health.py's."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote


def open_private_db(path: Path, *, timeout: float, setup: str = "") -> sqlite3.Connection:
    """A SQLite file only its owner can read (0600 in a 0700 folder), in WAL mode with synchronous=NORMAL
    (a commit costs no fsync; a power cut may lose the last moments, never the file), shared by threads
    (callers hold their own lock), after running `setup` (schema statements). The connection commits each
    statement on its own: group statements with `transaction`."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Made if missing (SQLite gives -wal/-shm the same mode), and opened for writing once: SQLite itself opens
    # a file it cannot write read-only, silently (its -shm left beside it), and keeps it so when the folder
    # takes writes again; here it is the folder's outage (EROFS, EACCES), and the store opens it anew later.
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
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
    db.execute("BEGIN IMMEDIATE")  # a transaction that reads, then writes: the busy wait applies (a deferred one
    # whose snapshot another writer made stale fails at its first write, "database is locked", without waiting)
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def writable(path: Path) -> bool:
    """Whether `path`, an existing SQLite file, can be opened for writing: the file and its folder (where
    SQLite makes the -wal and -shm) both writable. A read-only mount says no to root as well."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def read_only_copy(path: Path) -> sqlite3.Connection:
    """The file's committed content, copied into memory (a connection of its own, shared by threads): how a
    file is read in a folder that cannot be written. There SQLite cannot open a WAL-mode file as it is: its
    -shm cannot be made. A file closed cleanly (no -wal left, or an empty one) holds everything: read as
    immutable. One a process left with its -wal (killed) holds its last commits there, which immutable would
    not see: read with the -shm when it was left too, else from a private temporary copy of the two, where
    SQLite recovers the log as it opens them. Nothing is written beside the file."""
    wal = Path(f"{path}-wal")
    left = wal.exists() and wal.stat().st_size > 0
    openers = (_with_shm, _from_a_copy) if left else (_immutable,)
    for opener in openers:
        try:
            with opener(path) as source:
                memory = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
                source.backup(memory)
                return memory
        except (OSError, sqlite3.Error):
            if opener is openers[-1]:
                raise
    raise AssertionError("unreachable")


def _uri(path: Path, query: str) -> str:
    return f"file:{quote(str(path))}?{query}"


@contextlib.contextmanager
def _immutable(path: Path) -> Iterator[sqlite3.Connection]:
    with contextlib.closing(sqlite3.connect(_uri(path, "immutable=1"), uri=True)) as db:
        yield db


@contextlib.contextmanager
def _with_shm(path: Path) -> Iterator[sqlite3.Connection]:
    with contextlib.closing(sqlite3.connect(_uri(path, "mode=ro"), uri=True)) as db:
        yield db  # without its -shm: "unable to open database file" as it is read


@contextlib.contextmanager
def _from_a_copy(path: Path) -> Iterator[sqlite3.Connection]:
    with tempfile.TemporaryDirectory(prefix="qwen-read-only-") as folder:
        copy = Path(folder) / path.name
        shutil.copyfile(path, copy)
        shutil.copyfile(f"{path}-wal", f"{copy}-wal")
        with contextlib.closing(sqlite3.connect(copy)) as db:
            yield db
