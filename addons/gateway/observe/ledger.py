"""The usage ledger: one SQLite row per exchange in `<state_dir>/usage.sqlite3` (mode 0600) — forwarded
requests and the ones the gateway answered itself (refusals with their status and error code) — written
in batches from a thread, never on the event loop. `qwen-usage` reads it.

When its storage is away — any storage fault (storage/health.py, storage/pg_faults.py): the shared database
restarting, down, hung, full or read-only, at its migration or mid-batch; the state folder full, read-only,
locked or failing — the rows are kept in memory, at most MAX_KEPT (the oldest dropped beyond, counted, one
line), and written as soon as the storage's probe sees it back; the outage itself is one line. A failure
that is no storage fault is a bug (`UsageLedger._isolate`): shown once with its traceback, never retried."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ..storage.pg import Database, shown, unavailable
from ..storage.sqlite import open_private_db, transaction
from ..storage.health import Health, StateUnavailable, local_failure, local_health
from ..observer import Observer
from ..redact import safe_message
from .ledger_pg import SharedLedger
from .ledger_rows import COLUMNS, ERROR_CHARS, ROWS_PER_INSERT, inserts, row_of

if TYPE_CHECKING:
    from mitmproxy import http

    from ..config import Config
    from ..exchange import Exchange

__all__ = ["COLUMNS", "FILENAME", "Ledger", "SharedLedger", "UsageLedger", "row_of"]  # what commands and tests import
log = logging.getLogger("qwen")

FILENAME = "usage.sqlite3"
BUSY_S = 10  # how long a write waits for another process holding the file before the file counts as unavailable


def rows_per_insert(db: sqlite3.Connection) -> int:
    """The rows of the largest INSERT: ROWS_PER_INSERT, or the power of two SQLite's parameter limit allows."""
    fits = max(1, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(COLUMNS))
    return min(ROWS_PER_INSERT, 1 << (fits.bit_length() - 1))


class Ledger:
    """The SQLite file; safe to use from several threads (one connection behind a lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = open_private_db(path, timeout=BUSY_S)
        cols = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
        self._db.execute(f"CREATE TABLE IF NOT EXISTS usage ({cols})")
        have = {row[1] for row in self._db.execute("PRAGMA table_info(usage)")}
        for name, kind in COLUMNS.items():  # a ledger written by an older gateway
            if name not in have:
                self._db.execute(f"ALTER TABLE usage ADD COLUMN {name} {kind}")
        self._db.execute("CREATE INDEX IF NOT EXISTS usage_day ON usage (day)")
        self._db.execute("CREATE INDEX IF NOT EXISTS usage_ts ON usage (ts)")
        self._db.execute("CREATE UNIQUE INDEX IF NOT EXISTS usage_xid ON usage (xid)")
        self._most = rows_per_insert(self._db)

    def add(self, rows: list[dict]) -> None:
        with self._lock, transaction(self._db):  # one commit per batch, not per row
            for sql, args in inserts(rows, self._most, "?"):
                self._db.execute(f"INSERT OR IGNORE INTO usage {sql}", args)  # OR IGNORE: see `xid`

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()


class UsageLedger(Observer):
    """Rows are batched for FLUSH_S (or until MAX_BATCH) and written from a thread; `done` writes the rest.
    Rows its storage could not take are kept (MAX_KEPT) and written when the storage is back."""

    waits_for_estimate = True

    FLUSH_S = 0.5
    MAX_BATCH = 500
    MAX_KEPT = 10_000  # rows held while the storage is away (~20 MB; at 20 requests a second, 8 minutes)

    def __init__(self) -> None:
        self.path: Path | None = None
        self.url = ""  # qwen_state_url: the shared database's ledger instead of the file
        self.health: Health | None = None
        self._db: Database | None = None
        self._ledger: Ledger | SharedLedger | None = None
        self._open_lock = threading.Lock()
        self._rows: list[dict] = []
        self._dropped = 0  # rows given up since the storage went away
        self._bugs = 0  # rows dropped for a failure that is no storage fault
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_handle: asyncio.TimerHandle | None = None
        self._writes: set[asyncio.Task] = set()

    def configure(self, config: Config) -> None:
        self.path = config.state_dir / FILENAME
        self.url = config.state_url
        self._db = Database(self.url) if self.url else None
        self.health = self._db.health if self._db is not None else local_health(config.state_dir)
        self._loop = None  # `finished` registers the flush for the storage's return on its loop

    def where(self) -> str:
        """What the ledger is, for messages: the database (never a secret) or the file."""
        return shown(self.url) if self.url else str(self.path)

    def ledger(self) -> Ledger | SharedLedger:
        """The open ledger (opened at first use, again when the state folder changed; call from a thread)."""
        with self._open_lock:
            if self.path is None:
                raise RuntimeError("the usage ledger was not configured")
            if self._db is not None:
                if not isinstance(self._ledger, SharedLedger) or self._ledger.db.url != self.url:
                    if self._ledger is not None:
                        self._ledger.close()
                    self._ledger = SharedLedger(self._db)
            elif self._ledger is None or self._ledger.path != self.path:
                if self._ledger is not None:
                    self._ledger.close()
                self._ledger = Ledger(self.path)
            return self._ledger

    def finished(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        self._rows.append(row_of(ex))
        self._bound()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a script, a test): write now
            self._write_now()
            return
        if self._loop is not loop and self.health is not None:
            self._loop = loop
            self.health.when_back(self._flush_soon, loop)
        if len(self._rows) >= self.MAX_BATCH:
            self._flush_soon()
        elif self._flush_handle is None:
            self._flush_handle = loop.call_later(self.FLUSH_S, self._flush_soon)

    def _bound(self) -> None:
        over = len(self._rows) - self.MAX_KEPT
        if over > 0:
            del self._rows[:over]
            if not self._dropped:
                log.warning("qwen: the usage ledger holds at most %d rows while %s is unavailable: the oldest are "
                            "dropped (counted when it is back)", self.MAX_KEPT, self.where())
            self._dropped += over

    def _flush_soon(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        task = asyncio.get_running_loop().create_task(self.flush(), name="qwen: ledger flush")
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def flush(self) -> None:
        """Write the batched rows (in a thread); while the storage is away they wait for its return."""
        if not self._rows or (self.health is not None and self.health.down):
            return
        rows, self._rows = self._rows, []
        if not await asyncio.to_thread(self._write, rows):
            self._rows[:0] = rows  # before the rows that came meanwhile: the ledger stays in order
            self._bound()

    def _write(self, rows: list[dict]) -> bool:
        """Rows written (True), or kept for later (False: the storage is away, said once by its Health)."""
        try:
            ledger = self.ledger()  # opened: the folder, the connection, the migration
        except Exception as e:
            if self._away(e):
                return False
            self._bug(e, len(rows))
            return True
        try:
            ledger.add(rows)
        except Exception as e:
            return not self._away(e) and self._isolate(ledger, rows, e)
        self._written()
        return True

    def _away(self, e: Exception) -> bool:
        """`e` is a storage fault (its outage said once by the storage's Health): the rows wait for its return."""
        if isinstance(e, StateUnavailable):
            return True
        if self._db is not None:
            if unavailable(e):
                self._db.lost(e)
                return True
            return False
        return local_failure(self.path.parent if self.path else Path("."), e) is not None

    def _isolate(self, ledger: Ledger | SharedLedger, rows: list[dict], e: Exception) -> bool:
        """A batch failed, and not for its storage: a bug, or a row the table refuses (an operator's constraint).
        Each row is tried on its own, so one cannot take the batch with it; one that fails alone is dropped —
        kept, it would fail for ever and push good rows out — and counted (`_bug`). True, or False (kept) when
        the storage went away meanwhile (the rows written already are taken once: `xid`)."""
        if len(rows) == 1:
            self._bug(e, 1)
            return True
        for row in rows:
            try:
                ledger.add([row])
            except Exception as again:
                if self._away(again):
                    return False
                self._bug(again, 1)
        return True

    def _bug(self, e: Exception, rows: int) -> None:
        """`rows` dropped for `e`, no storage fault: the first time, one line with its traceback; then counted
        (one line at shutdown)."""
        with self._open_lock:
            first, self._bugs = not self._bugs, self._bugs + rows
        if first:
            log.error("qwen: the usage ledger could not write to %s: %s. Not a storage fault (a bug, or a row the "
                      "table refuses): such rows are dropped, not retried, and counted at shutdown", self.where(),
                      safe_message(f"{type(e).__name__}: {e}", ERROR_CHARS), exc_info=e)

    def _written(self) -> None:
        if self.health is not None:
            self.health.ok()
        if self._dropped:
            log.warning("qwen: the usage ledger is written again; %d rows of the outage were dropped",
                        self._dropped)
            self._dropped = 0

    def _write_now(self) -> None:
        rows, self._rows = self._rows, []
        if rows and not self._write(rows):
            log.warning("qwen: %d usage rows could not be written: %s is unavailable", len(rows), self.where())

    def done(self) -> None:
        """Shutdown: whatever is still batched is written now."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._write_now()
        if self._bugs:
            log.warning("qwen: %d usage rows could not be written to %s (the error logged above): dropped",
                        self._bugs, self.where())
