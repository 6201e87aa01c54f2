"""The usage ledger in a shared PostgreSQL database (`qwen_state_url`): its schema steps and `SharedLedger`."""

from __future__ import annotations

import contextlib
import threading
from decimal import Decimal
from typing import Any

from ..storage.pg import Database, deadline, placeholders, shown, unavailable
from .ledger_rows import COLUMNS, ROWS_PER_INSERT, UNPRICED_BEFORE, inserts

_PG_TYPES = {"REAL": "DOUBLE PRECISION", "INTEGER": "BIGINT", "TEXT": "TEXT"}
PG_STEPS = (  # the ledger's schema in a shared database (storage/pg.py migrates it)
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
    # Qwen's cache: writes, which cache, what it saved (issue 39)
    "ALTER TABLE usage ADD COLUMN IF NOT EXISTS cache_write_tokens BIGINT, "
    "ADD COLUMN IF NOT EXISTS cache_kind TEXT, ADD COLUMN IF NOT EXISTS cache_saved DOUBLE PRECISION",
    # the cache doctor: each turn's conversation, number and miss (issue 53)
    "ALTER TABLE usage ADD COLUMN IF NOT EXISTS conversation TEXT, ADD COLUMN IF NOT EXISTS cache_turn BIGINT, "
    "ADD COLUMN IF NOT EXISTS cache_miss TEXT, ADD COLUMN IF NOT EXISTS miss_tokens BIGINT, "
    "ADD COLUMN IF NOT EXISTS miss_usd DOUBLE PRECISION",
    # whose price counted an answer that has none (qwen_unpriced_as), and the rows no price counted before (issue 59)
    "ALTER TABLE usage ADD COLUMN IF NOT EXISTS priced_as TEXT",
    UNPRICED_BEFORE,
    # how often Qwen's stream broke before its end (issue 67)
    "ALTER TABLE usage ADD COLUMN IF NOT EXISTS cuts BIGINT",
    # which list from Qwen (and which of its tiers) priced the row (issue 70)
    "ALTER TABLE usage ADD COLUMN IF NOT EXISTS priced_by TEXT",
    # the lifetime a turn's cache markers asked (issue 71: qwen_cache_lifetime=auto's hour)
    "ALTER TABLE usage ADD COLUMN IF NOT EXISTS cache_ttl BIGINT",
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

    def _use(self, work: Any, hurried: bool = False) -> Any:
        """`work(connection)`; a connection the server ended (a restart ends every session) is replaced once
        and the work run again; StateUnavailable when the database cannot be used — `hurried`: too when it
        does not answer within pg's DEADLINE_S (the gateway's writes; a report may take its time)."""
        with self._lock:
            for attempt in (1, 2):
                if self._conn is None or self._conn.closed:
                    self._conn = self.db.connect()
                clock = None
                try:
                    with deadline(self._conn) if hurried else contextlib.nullcontext() as clock:
                        result = work(self._conn)
                    break
                except Exception as e:
                    if not unavailable(e):
                        raise
                    broken = self._conn.broken
                    self._conn.close()
                    self._conn = None
                    if clock is not None and clock.expired:
                        raise self.db.hung() from None  # a new connection would wait as long
                    if attempt == 2 or not broken:
                        raise self.db.lost(e) from None
        self.db.health.ok()
        return result

    def add(self, rows: list[dict]) -> None:
        def insert(conn: Any) -> None:
            with conn.transaction(), conn.cursor() as cur:  # one commit per batch
                for sql, args in inserts(rows, ROWS_PER_INSERT, "%s"):  # a few statements, as in the file
                    cur.execute(f"INSERT INTO usage {sql} ON CONFLICT DO NOTHING", args)  # see PG_STEPS

        self._use(insert, hurried=True)

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        rows = self._use(lambda conn: conn.execute(placeholders(sql), args).fetchall())
        return [tuple(_plain(v) for v in r) for r in rows]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
