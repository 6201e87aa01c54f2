"""The usage ledger: one SQLite row per exchange in `<state_dir>/usage.sqlite3` (mode 0600) — forwarded
requests and the ones the gateway answered itself (refusals with their status and error code) — written
in batches from a thread, never on the event loop. `qwen-usage` reads it.

When its storage is away — any storage fault (storage/health.py, storage/pg_faults.py): the shared database
restarting, down, hung, full or read-only, at its migration or mid-batch; the state folder full, read-only,
locked or failing — the rows are kept in memory, at most MAX_KEPT (the oldest dropped beyond, counted, one
line), and written as soon as the storage's probe sees it back; the outage itself is one line. A failure
that is no storage fault — a bug, a row the table refuses, a ledger that cannot be opened for another reason —
loses no row either: shown once with its traceback, the rows that fail alone (`UsageLedger._isolate`) are held
back, within the same MAX_KEPT, and tried again every HELD_RETRY_S, so that they are written once the fault is
mended (without a restart); what is still held at shutdown is counted in one line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..storage.pg import Database, shown, unavailable
from ..storage.sqlite import open_private_db, transaction
from ..storage.health import Health, StateUnavailable, local_failure, local_health
from ..observer import Observer
from ..redact import safe_message
from .ledger_pg import SharedLedger
from .ledger_rows import COLUMNS, ERROR_CHARS, ROWS_PER_INSERT, UNPRICED_BEFORE, inserts, row_of

if TYPE_CHECKING:
    from mitmproxy import http

    from ..settings.config import Config
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
        if "priced_as" not in have:  # its rows that no price counted, once (a new file has none)
            self._db.execute(UNPRICED_BEFORE)
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
    Rows its storage could not take are kept (MAX_KEPT) and written when the storage is back; rows that failed
    for something else are held back and tried again every HELD_RETRY_S."""

    waits_for_estimate = True

    FLUSH_S = 0.5
    MAX_BATCH = 500
    MAX_KEPT = 10_000  # rows held while the storage is away (~20 MB; at 20 requests a second, 8 minutes)
    HELD_RETRY_S = 60.0  # how often rows that failed for no storage fault are tried again (the fault mended)

    def __init__(self) -> None:
        self.path: Path | None = None
        self.url = ""  # qwen_state_url: the shared database's ledger instead of the file
        self.health: Health | None = None
        self._db: Database | None = None
        self._ledger: Ledger | SharedLedger | None = None
        self._open_lock = threading.Lock()
        self._rows: list[dict] = []
        self._held: list[dict] = []  # rows that failed for no storage fault, tried again at `_retry_at`
        self._retry_at = 0.0  # monotonic
        self._stalled = False  # the last try wrote nothing (the ledger cannot be opened): every row waits for the retry
        self._failing = False  # that failure was logged (once, until the held rows are written)
        self._dropped = 0  # rows given up since the storage went away
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_handle: asyncio.TimerHandle | None = None
        self._writes: set[asyncio.Task] = set()

    def configure(self, config: Config) -> None:
        self.path = config.state_dir / FILENAME
        self.url = config.state_url
        self._db = Database(self.url) if self.url else None
        self.health = self._db.health if self._db is not None else local_health(config.state_dir)
        self._loop = None  # `finished` registers the flush for the storage's return on its loop
        self._retry_at, self._stalled = 0.0, False  # another storage: the rows held back are tried on it at once

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
        """At most MAX_KEPT rows waiting, kept and held together: the oldest go, the held ones first."""
        over = len(self._held) + len(self._rows) - self.MAX_KEPT
        if over > 0:
            held = min(over, len(self._held))
            del self._held[:held]
            del self._rows[:over - held]
            if not self._dropped:
                log.warning("qwen: the usage ledger holds at most %d rows while %s cannot take them: the oldest are "
                            "dropped (counted when it takes them again)", self.MAX_KEPT, self.where())
            self._dropped += over

    def _flush_soon(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        task = asyncio.get_running_loop().create_task(self.flush(), name="qwen: ledger flush")
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def flush(self) -> None:
        """Write the batched rows (in a thread); while the storage is away they wait for its return, while the
        ledger cannot be used for another reason they wait for the next retry."""
        if self.health is not None and self.health.down:
            return
        due = time.monotonic() >= self._retry_at
        if self._stalled and not due:
            return
        rows, retried = self._take(due)
        if rows:
            self._settle(rows, retried, await asyncio.to_thread(self._write, rows))

    def _take(self, due: bool) -> tuple[list[dict], bool]:
        """The rows to write now, the held ones first when their retry is due; and whether they are in."""
        rows, self._rows = self._rows, []
        retried = bool(self._held) and due
        if retried:
            rows, self._held = self._held + rows, []
        return rows, retried

    def _settle(self, rows: list[dict], retried: bool, held: list[dict] | None) -> None:
        """After a write of `rows`: all kept for the storage's return (None), or `held` held back for a retry."""
        if held is None:
            self._rows[:0] = rows  # before the rows that came meanwhile: the ledger stays in order
            self._bound()
            return
        self._stalled = len(held) == len(rows)
        if held:
            self._held.extend(held)
            self._bound()
            now = time.monotonic()
            if self._retry_at <= now:  # a retry already waiting keeps its time (rows failing now and then)
                self._retry_at = now + self.HELD_RETRY_S
                with contextlib.suppress(RuntimeError):  # no event loop: the next flush, or shutdown, retries
                    asyncio.get_running_loop().call_later(self.HELD_RETRY_S, self._flush_soon)
        elif retried and self._failing:
            self._failing = False
            log.info("qwen: the usage ledger wrote the rows it held back to %s", self.where())

    def _write(self, rows: list[dict]) -> list[dict] | None:
        """Writes `rows` (in a thread): the rows held back ([]: all written), or None when the storage is away
        (every row waits for its return; said once by its Health)."""
        try:
            ledger = self.ledger()  # opened: the folder, the connection, the migration
        except Exception as e:
            if self._away(e):
                return None
            self._hold(e)  # whatever could not open it, no row is the cause: all of them wait
            return rows
        try:
            ledger.add(rows)
        except Exception as e:
            return None if self._away(e) else self._isolate(ledger, rows, e)
        self._written()
        return []

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

    def _isolate(self, ledger: Ledger | SharedLedger, rows: list[dict], e: Exception) -> list[dict] | None:
        """A batch failed, and not for its storage: a bug, or a row the table refuses (an operator's constraint).
        Each row is tried on its own, so one cannot take the batch with it; those that fail alone are held back
        (`_hold`). None when the storage went away meanwhile (the rows written already are taken once: `xid`)."""
        if len(rows) == 1:
            self._hold(e)
            return rows
        held = []
        for row in rows:
            try:
                ledger.add([row])
            except Exception as again:
                if self._away(again):
                    return None
                self._hold(again)
                held.append(row)
        if len(held) < len(rows):
            self._written()
        return held

    def _hold(self, e: Exception) -> None:
        """Rows failed for `e`, no storage fault: kept, and said once with its traceback (a bug to see)."""
        with self._open_lock:
            first, self._failing = not self._failing, True
        if first:
            log.error("qwen: the usage ledger could not write to %s: %s. Not a storage fault (a bug, or a row the "
                      "table refuses): the rows are kept in memory and tried again every %.0f s", self.where(),
                      safe_message(f"{type(e).__name__}: {e}", ERROR_CHARS), self.HELD_RETRY_S, exc_info=e)

    def _written(self) -> None:
        if self.health is not None:
            self.health.ok()
        if self._dropped:
            log.warning("qwen: the usage ledger is written again; %d rows of the outage were dropped",
                        self._dropped)
            self._dropped = 0

    def _write_now(self) -> None:
        rows, retried = self._take(due=True)
        if not rows:
            return
        held = self._write(rows)
        self._settle(rows, retried, held)
        if held is None:
            log.warning("qwen: %d usage rows could not be written: %s is unavailable", len(rows), self.where())

    def done(self) -> None:
        """Shutdown: whatever is still batched, or held back, is written now."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._write_now()
        if self._held:
            log.warning("qwen: %d usage rows could not be written to %s (the error logged above): lost with the "
                        "gateway", len(self._held), self.where())
