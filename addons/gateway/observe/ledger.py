"""The usage ledger: one SQLite row per exchange in `<state_dir>/usage.sqlite3` (mode 0600) — forwarded
requests and the ones the gateway answered itself (refusals with their status and error code) — written
in batches from a thread, never on the event loop. `qwen-usage` reads it.

When its storage is away (the shared database restarting or down, the state folder full or read-only:
auth/storage.py) the rows are kept in memory, at most MAX_KEPT (the oldest dropped beyond, counted, one
line), and written as soon as the storage's probe sees it back; the outage itself is one line."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..auth.pg import Database, placeholders, shown, unavailable
from ..auth.state import open_private_db, transaction
from ..auth.storage import Health, StateUnavailable, local_failure, local_health
from ..jsonio import valid_text
from ..observer import Observer, cached_tokens, error_code, error_text, label, status_of, usage_int
from ..redact import safe_message

if TYPE_CHECKING:
    from mitmproxy import http

    from ..config import Config
    from ..exchange import Exchange

log = logging.getLogger("qwen")

FILENAME = "usage.sqlite3"
ERROR_CHARS = 300  # an error message (when there is no code) is kept up to this
COLUMNS: dict[str, str] = {
    "ts": "REAL",  # epoch seconds, when the request arrived
    "day": "TEXT",  # local date of ts, YYYY-MM-DD
    "endpoint": "TEXT",  # the endpoint, or the route of a local answer (models, health, unknown, …)
    "model": "TEXT",  # as the client asked
    "upstream_model": "TEXT",
    "account": "TEXT",
    "status": "INTEGER",  # what the client got
    "prompt_tokens": "INTEGER",  # usage reported by Qwen
    "completion_tokens": "INTEGER",
    "cached_tokens": "INTEGER",
    "est_tokens": "INTEGER",  # the gateway's own estimate (tiktoken)
    "ttfb_ms": "REAL",
    "duration_ms": "REAL",
    "stream": "INTEGER",
    "retries": "INTEGER",
    "error": "TEXT",  # error code, or the message that ended a stream early
    "token_method": "TEXT",
    "method": "TEXT",  # the client's request line (path without the query)
    "path": "TEXT",
    "key_name": "TEXT",  # the named client key (qwen-keys) the request came with
    "cost": "REAL",  # what it cost (prices.py), in cost_unit
    "cost_unit": "TEXT",  # USD, or a Coding Plan's requests / a Token Plan's tokens
    "xid": "TEXT",  # the exchange's id (random, 128 bits): a batch written again is taken once (UNIQUE)
}


class Ledger:
    """The SQLite file; safe to use from several threads (one connection behind a lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = open_private_db(path, timeout=10)
        cols = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
        self._db.execute(f"CREATE TABLE IF NOT EXISTS usage ({cols})")
        have = {row[1] for row in self._db.execute("PRAGMA table_info(usage)")}
        for name, kind in COLUMNS.items():  # a ledger written by an older gateway
            if name not in have:
                self._db.execute(f"ALTER TABLE usage ADD COLUMN {name} {kind}")
        self._db.execute("CREATE INDEX IF NOT EXISTS usage_day ON usage (day)")
        self._db.execute("CREATE INDEX IF NOT EXISTS usage_ts ON usage (ts)")
        self._db.execute("CREATE UNIQUE INDEX IF NOT EXISTS usage_xid ON usage (xid)")

    def add(self, rows: list[dict]) -> None:
        names = list(COLUMNS)
        with self._lock, transaction(self._db):  # one commit per batch, not per row
            self._db.executemany(f"INSERT OR IGNORE INTO usage ({', '.join(names)}) "  # OR IGNORE: see `xid`
                                 f"VALUES ({', '.join('?' * len(names))})", _values(rows, names))

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()


_PG_TYPES = {"REAL": "DOUBLE PRECISION", "INTEGER": "BIGINT", "TEXT": "TEXT"}
PG_STEPS = (  # the ledger's schema in a shared database (auth/pg.py migrates it)
    f"CREATE TABLE usage ({', '.join(f'{name} {_PG_TYPES[kind]}' for name, kind in COLUMNS.items())})",
    "CREATE INDEX usage_day ON usage (day)",
    "CREATE INDEX usage_ts ON usage (ts)",
    # the team gateway's columns, for a ledger created before them (step 1 of a new one has them already)
    "ALTER TABLE usage ADD COLUMN IF NOT EXISTS key_name TEXT, ADD COLUMN IF NOT EXISTS cost DOUBLE PRECISION, "
    "ADD COLUMN IF NOT EXISTS cost_unit TEXT",
    # each row's exchange id, taken once: a COMMIT the server carried out as it shut down, whose answer never
    # came, leaves its batch to be written again when the database is back
    "ALTER TABLE usage ADD COLUMN IF NOT EXISTS xid TEXT",
    "CREATE UNIQUE INDEX IF NOT EXISTS usage_xid ON usage (xid)",
)


def _plain(value: Any) -> Any:
    """PostgreSQL's SUM of integers is numeric: an int (or float) for the report and JSON."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


class SharedLedger:
    """The ledger in a shared PostgreSQL database (`qwen_state_url`): every gateway's rows in one table,
    read by `qwen-usage --state-url`. Ledger's interface, from the writer thread or a command (a plain
    connection, never on the event loop); `query` takes SQL written for SQLite and translates its `?`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.path = shown(db.url)  # what the ledger is, for messages (never a secret)
        self._lock = threading.Lock()
        db.migrate("usage", PG_STEPS)
        self._conn: Any = db.connect()

    def _use(self, work: Any) -> Any:
        """`work(connection)`; a connection the server ended (a restart ends every session) is replaced once
        and the work run again; StateUnavailable when the database cannot be used."""
        with self._lock:
            for attempt in (1, 2):
                if self._conn is None or self._conn.closed:
                    self._conn = self.db.connect()
                try:
                    result = work(self._conn)
                    break
                except Exception as e:
                    if not unavailable(e):
                        raise
                    broken = self._conn.broken
                    self._conn.close()
                    self._conn = None
                    if attempt == 2 or not broken:
                        raise self.db.lost(e) from None
        self.db.health.ok()
        return result

    def add(self, rows: list[dict]) -> None:
        names = list(COLUMNS)
        sql = (f"INSERT INTO usage ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))}) "
               "ON CONFLICT DO NOTHING")  # a batch written again (see PG_STEPS)

        def insert(conn: Any) -> None:
            with conn.transaction(), conn.cursor() as cur:  # one commit per batch
                cur.executemany(sql, _values(rows, names))

        self._use(insert)

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        rows = self._use(lambda conn: conn.execute(placeholders(sql), args).fetchall())
        return [tuple(_plain(v) for v in r) for r in rows]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()


def _values(rows: list[dict], names: list[str]) -> list[tuple]:
    """The rows as the database takes them: a client's text (its model name, an error quoting it) may hold a
    lone surrogate, which neither SQLite nor PostgreSQL can store."""
    return [tuple(valid_text(v) if isinstance(v, str) else v for v in (row.get(c) for c in names)) for row in rows]


def row_of(ex: Exchange) -> dict:
    """One ledger row from an exchange (cheap: built on the event loop, written later)."""
    usage = ex.usage if isinstance(ex.usage, dict) else None
    ts = ex.started_at
    return {
        "ts": ts, "day": time.strftime("%Y-%m-%d", time.localtime(ts)),
        "endpoint": label(ex), "method": ex.client.method, "path": ex.client.path,
        "model": ex.requested_model if isinstance(ex.requested_model, str) and ex.requested_model else None,
        "upstream_model": ex.upstream_model or None, "account": ex.account or None,
        "status": status_of(ex),
        "prompt_tokens": usage_int(usage, "prompt_tokens"), "completion_tokens": usage_int(usage, "completion_tokens"),
        "cached_tokens": cached_tokens(usage),
        "est_tokens": ex.prompt_tokens_est, "token_method": ex.token_method,
        "ttfb_ms": ex.ttfb_ms, "duration_ms": ex.duration_ms,
        "stream": int(ex.stream is True), "retries": len(ex.retries),
        "error": error_code(ex) or safe_message(error_text(ex), ERROR_CHARS),
        "key_name": ex.key_name or None, "cost": ex.cost, "cost_unit": ex.cost_unit or None, "xid": ex.id,
    }


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
            self.ledger().add(rows)
        except StateUnavailable:
            return False
        except Exception as e:
            if self.url or local_failure(self.path.parent if self.path else Path("."), e) is None:
                log.exception("qwen: could not write %d usage rows to %s", len(rows), self.where())
                return True  # not the storage's doing: these rows would fail again
            return False
        if self.health is not None:
            self.health.ok()
        if self._dropped:
            log.warning("qwen: the usage ledger is written again; %d rows of the outage were dropped",
                        self._dropped)
            self._dropped = 0
        return True

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
