"""Where named client keys and their spend are kept: `<state_dir>/keys.sqlite3` (0600, WAL) or, with
`qwen_state_url`, the shared PostgreSQL database. One set of statements for both (written for SQLite,
`storage/pg.placeholders` makes them psycopg's).

    client_keys  name, digest (SHA-256, hex: never the key), rpm, tpm, daily_tokens, monthly_usd, created,
                 changed, revoked (epoch seconds, or NULL)
    key_day      per key and UTC day: requests, refused, tokens, usd, plan_requests, plan_tokens, last_used
    key_grants   (PostgreSQL only) the allowance gateways took for rpm and tpm (door/limits.py)

`KeyStore` is the blocking side: `qwen-keys`, and the SQLite gateway's thread. The gateway's side on
PostgreSQL is door/team_pg.py, with the same statements.

A state folder that cannot be written (a read-only mount) still has its keys read, into memory as last committed
(storage/sqlite.py's `read_only_copy`): the door holds as they say, and every write fails as the folder's outage
(SQLite's "readonly database") until the folder takes writes again; then the file is opened as usual."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..days import utc_day
from ..storage.pg import CHANNEL, Database, placeholders
from ..storage.sqlite import open_private_db, read_only_copy, transaction, writable
from .keyring import KeyRecord

FILENAME = "keys.sqlite3"
SNAPSHOT = "keys-shared.sqlite3"  # the shared keys as this gateway last read them (a database down at start)
COMPONENT = "keys"
_KEYS = ("CREATE TABLE {ine} client_keys (name TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE, "
         "rpm {int} NOT NULL DEFAULT 0, tpm {int} NOT NULL DEFAULT 0, daily_tokens {int} NOT NULL DEFAULT 0, "
         "monthly_usd {real} NOT NULL DEFAULT 0, created {real} NOT NULL, changed {real} NOT NULL, revoked {real})")
_DAYS = ("CREATE TABLE {ine} key_day (name TEXT NOT NULL, day TEXT NOT NULL, requests {int} NOT NULL DEFAULT 0, "
         "refused {int} NOT NULL DEFAULT 0, tokens {int} NOT NULL DEFAULT 0, usd {real} NOT NULL DEFAULT 0, "
         "plan_requests {int} NOT NULL DEFAULT 0, plan_tokens {int} NOT NULL DEFAULT 0, last_used {real}, "
         "PRIMARY KEY (name, day))")
SQLITE_SCHEMA = ";\n".join(s.format(ine="IF NOT EXISTS", int="INTEGER", real="REAL") for s in (_KEYS, _DAYS)) + ";"
_PG = {"ine": "", "int": "BIGINT", "real": "DOUBLE PRECISION"}
PG_STEPS = (
    _KEYS.format(**_PG),
    _DAYS.format(**_PG),
    "CREATE TABLE key_grants (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL, "
    "at DOUBLE PRECISION NOT NULL, amount BIGINT NOT NULL)",
    "CREATE INDEX key_grants_window ON key_grants (name, kind, at)",
    # One round trip, atomic under the key's advisory lock, on the database's clock (gateways' clocks may
    # differ): drop what left the window, and grant `want` (up to `chunk`) if it fits under `limit`; else
    # say when the oldest grant leaves the window.
    """CREATE FUNCTION qwen_key_take(p_name TEXT, p_kind TEXT, p_want BIGINT, p_chunk BIGINT, p_limit BIGINT,
        p_window DOUBLE PRECISION) RETURNS TABLE (granted BIGINT, grant_id BIGINT, retry_after DOUBLE PRECISION)
    LANGUAGE plpgsql AS $$
    DECLARE now_s DOUBLE PRECISION; used BIGINT; oldest DOUBLE PRECISION; give BIGINT; new_id BIGINT;
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtextextended('qwen-key:' || p_name || ':' || p_kind, 0));
        now_s := extract(epoch FROM clock_timestamp());
        DELETE FROM key_grants g WHERE g.name = p_name AND g.kind = p_kind AND g.at <= now_s - p_window;
        SELECT COALESCE(SUM(g.amount), 0), MIN(g.at) INTO used, oldest FROM key_grants g
            WHERE g.name = p_name AND g.kind = p_kind;
        IF used + p_want > p_limit THEN
            RETURN QUERY SELECT 0::BIGINT, 0::BIGINT, GREATEST(COALESCE(oldest + p_window - now_s, p_window), 0.0);
            RETURN;
        END IF;
        give := GREATEST(p_want, LEAST(p_chunk, p_limit - used));
        INSERT INTO key_grants (name, kind, at, amount) VALUES (p_name, p_kind, now_s, give) RETURNING id INTO new_id;
        RETURN QUERY SELECT give, new_id, 0.0::DOUBLE PRECISION;
    END $$""",
    # qwen_key_take, also saying how much of the window is in use and when it is empty again: the rate-limit
    # headers clients read (door/ratelimits.py). Gateways of before still call qwen_key_take.
    """CREATE FUNCTION qwen_key_grant(p_name TEXT, p_kind TEXT, p_want BIGINT, p_chunk BIGINT, p_limit BIGINT,
        p_window DOUBLE PRECISION) RETURNS TABLE (granted BIGINT, grant_id BIGINT, retry_after DOUBLE PRECISION,
        used BIGINT, reset_after DOUBLE PRECISION)
    LANGUAGE plpgsql AS $$
    DECLARE now_s DOUBLE PRECISION; in_use BIGINT; oldest DOUBLE PRECISION; newest DOUBLE PRECISION; give BIGINT;
        new_id BIGINT;
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtextextended('qwen-key:' || p_name || ':' || p_kind, 0));
        now_s := extract(epoch FROM clock_timestamp());
        DELETE FROM key_grants g WHERE g.name = p_name AND g.kind = p_kind AND g.at <= now_s - p_window;
        SELECT COALESCE(SUM(g.amount), 0), MIN(g.at), MAX(g.at) INTO in_use, oldest, newest FROM key_grants g
            WHERE g.name = p_name AND g.kind = p_kind;
        IF in_use + p_want > p_limit THEN
            RETURN QUERY SELECT 0::BIGINT, 0::BIGINT, GREATEST(COALESCE(oldest + p_window - now_s, p_window), 0.0),
                in_use, GREATEST(COALESCE(newest + p_window - now_s, 0.0), 0.0);
            RETURN;
        END IF;
        give := GREATEST(p_want, LEAST(p_chunk, p_limit - in_use));
        INSERT INTO key_grants (name, kind, at, amount) VALUES (p_name, p_kind, now_s, give) RETURNING id INTO new_id;
        RETURN QUERY SELECT give, new_id, 0.0::DOUBLE PRECISION, in_use + give, p_window;
    END $$""",
)

KEY_COLUMNS = "name, digest, rpm, tpm, daily_tokens, monthly_usd, revoked"
LIMITS = ("rpm", "tpm", "daily_tokens", "monthly_usd")


def record_of(row: tuple) -> KeyRecord:
    return KeyRecord(row[0], bytes.fromhex(row[1]), int(row[2] or 0), int(row[3] or 0), int(row[4] or 0),
                     float(row[5] or 0), row[6] is not None)


@dataclass
class Spent:
    """A key's spend this UTC day (tokens, requests, refusals) and month (USD, plan units)."""

    tokens_today: int = 0
    requests_today: int = 0
    refused_today: int = 0
    usd_month: float = 0.0
    plan_requests_month: int = 0
    plan_tokens_month: int = 0
    last_used: float | None = None


@dataclass
class Delta:
    """Spend not yet written, for one key and day."""

    requests: int = 0
    refused: int = 0
    tokens: int = 0
    usd: float = 0.0
    plan_requests: int = 0
    plan_tokens: int = 0
    last_used: float | None = None

    def values(self) -> tuple:
        return (self.requests, self.refused, self.tokens, self.usd, self.plan_requests, self.plan_tokens,
                self.last_used)


def spend_query(today: str, name: str | None = None) -> tuple[str, tuple]:
    """Each key's spend today and this month (one statement, `?` placeholders)."""
    month_start = today[:8] + "01"
    sql = ("SELECT name, SUM(CASE WHEN day = ? THEN tokens ELSE 0 END), SUM(CASE WHEN day = ? THEN requests ELSE 0 END), "
           "SUM(CASE WHEN day = ? THEN refused ELSE 0 END), SUM(usd), SUM(plan_requests), SUM(plan_tokens), "
           "MAX(last_used) FROM key_day WHERE day >= ? AND day <= ?" + (" AND name = ?" if name is not None else "")
           + " GROUP BY name")
    return sql, (today, today, today, month_start, today, *((name,) if name is not None else ()))


def spent_of(row: tuple) -> Spent:
    return Spent(int(row[1] or 0), int(row[2] or 0), int(row[3] or 0), float(row[4] or 0), int(row[5] or 0),
                 int(row[6] or 0), float(row[7]) if row[7] else None)


def add_spend_sql(greatest: str) -> str:
    """Adds a delta to a key's day: gateways sharing the table add, never overwrite."""
    add = ", ".join(f"{c} = key_day.{c} + excluded.{c}" for c in
                    ("requests", "refused", "tokens", "usd", "plan_requests", "plan_tokens"))
    return ("INSERT INTO key_day (name, day, requests, refused, tokens, usd, plan_requests, plan_tokens, last_used) "
            f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name, day) DO UPDATE SET {add}, "
            f"last_used = {greatest}(COALESCE(key_day.last_used, 0), COALESCE(excluded.last_used, 0))")


def _open(path: Path) -> sqlite3.Connection:
    return open_private_db(path, timeout=10, setup=SQLITE_SCHEMA)


class KeyNameError(ValueError):
    """What `qwen-keys` says when a name does or does not exist."""


class KeyStore:
    """Blocking access (a command, or a thread): a SQLite connection or a psycopg one."""

    def __init__(self, conn: Any, *, shared: bool, copy_of: Path | None = None) -> None:
        self.conn = conn
        self.shared = shared
        self.copy_of = copy_of  # SQLite: the file `conn` is a read-only copy of (its folder cannot be written)
        self._reopened = 0  # how many times the file was opened anew (a new data_version sequence)
        self._add_spend = self._sql(add_spend_sql("GREATEST" if shared else "MAX"))

    @classmethod
    def local(cls, state_dir: Path, filename: str = FILENAME) -> KeyStore:
        """The keys file, opened to read and write; read into memory when its folder cannot be written."""
        path = state_dir / filename
        if path.exists() and not writable(path):  # SQLite would open it read-only for good, or not at all
            return cls(read_only_copy(path), shared=False, copy_of=path)
        return cls(_open(path), shared=False)

    def _writable_again(self) -> None:
        """A read-only copy replaced by the file itself, once its folder takes writes again."""
        if self.copy_of is None or not writable(self.copy_of):
            return
        try:
            conn = _open(self.copy_of)
        except (OSError, sqlite3.Error):
            return  # not yet: the copy serves on
        self.conn.close()
        self.conn, self.copy_of = conn, None
        self._reopened += 1

    @classmethod
    def remote(cls, db: Database) -> KeyStore:
        db.migrate(COMPONENT, PG_STEPS)
        return cls(db.connect(), shared=True)

    def _sql(self, sql: str) -> str:
        return placeholders(sql) if self.shared else sql

    def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        return list(self.conn.execute(self._sql(sql), args).fetchall())

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        if self.copy_of is not None:
            raise sqlite3.OperationalError("attempt to write a readonly database")  # what SQLite says there
        if self.shared:
            with self.conn.transaction():
                yield
        else:
            with transaction(self.conn):
                yield

    def _notify(self, name: str) -> None:
        """Running gateways on the shared database reload the key at once (others poll the file)."""
        if self.shared:
            self.conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"key:{name}"))

    # ---- keys --------------------------------------------------------------------------------------

    def keys(self) -> tuple[KeyRecord, ...]:
        return tuple(record_of(r) for r in self._rows(f"SELECT {KEY_COLUMNS} FROM client_keys ORDER BY name"))

    def key(self, name: str) -> KeyRecord | None:
        rows = self._rows(f"SELECT {KEY_COLUMNS} FROM client_keys WHERE name = ?", (name,))
        return record_of(rows[0]) if rows else None

    def add(self, name: str, key_digest: bytes, limits: dict[str, float]) -> None:
        """A new key (over a revoked one of the same name: its spend stays with the name)."""
        now = time.time()
        with self._tx():
            old = self.key(name)
            if old is not None and not old.revoked:
                raise KeyNameError(f"key {name!r} exists; revoke it first, `rotate` it for a new key, or `set` its limits")
            self.conn.execute(self._sql("DELETE FROM client_keys WHERE name = ?"), (name,))
            self.conn.execute(self._sql("INSERT INTO client_keys (name, digest, rpm, tpm, daily_tokens, monthly_usd, "
                                        "created, changed, revoked) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)"),
                              (name, key_digest.hex(), *(limits.get(k, 0) for k in LIMITS), now, now))
            self._notify(name)

    def update(self, name: str, **values: Any) -> KeyRecord:
        """Limits, a new digest (rotate) or the revocation of an existing key."""
        with self._tx():
            old = self.key(name)
            if old is None:
                raise KeyNameError(f"no key named {name!r} (qwen-keys list shows them)")
            sets = ", ".join(f"{k} = ?" for k in values)
            self.conn.execute(self._sql(f"UPDATE client_keys SET {sets}, changed = ? WHERE name = ?"),
                              (*values.values(), time.time(), name))
            self._notify(name)
        new = self.key(name)
        assert new is not None
        return new

    def delete(self, name: str) -> None:
        """The key gone for good: its record (digest, limits) and its spend (the usage ledger keeps its
        requests under its name); the name may be used again, from zero."""
        with self._tx():
            if self.key(name) is None:
                raise KeyNameError(f"no key named {name!r} (qwen-keys list shows them)")
            for table in ("client_keys", "key_day") + (("key_grants",) if self.shared else ()):
                self.conn.execute(self._sql(f"DELETE FROM {table} WHERE name = ?"), (name,))
            self._notify(name)

    def replace_all(self, records: tuple[KeyRecord, ...]) -> None:
        """The snapshot: exactly these keys (digests and limits)."""
        now = time.time()
        with self._tx():
            self.conn.execute("DELETE FROM client_keys")
            for r in records:
                self.conn.execute(self._sql("INSERT INTO client_keys (name, digest, rpm, tpm, daily_tokens, "
                                            "monthly_usd, created, changed, revoked) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                                  (r.name, r.digest.hex(), r.rpm, r.tpm, r.daily_tokens, r.monthly_usd, now, now,
                                   now if r.revoked else None))

    # ---- spend -------------------------------------------------------------------------------------

    def spend(self, name: str | None = None, today: str | None = None) -> dict[str, Spent]:
        sql, args = spend_query(today or utc_day(), name)
        return {r[0]: spent_of(r) for r in self._rows(sql, args)}

    def write_spend(self, deltas: dict[tuple[str, str], Delta]) -> None:
        self._writable_again()
        with self._tx():
            for (name, day), d in deltas.items():
                self.conn.execute(self._add_spend, (name, day, *d.values()))

    def data_version(self) -> int:
        """SQLite: changes when another connection (a command, another gateway) committed, and when the file
        was opened anew (its folder writable again: what changed meanwhile is read)."""
        self._writable_again()
        return self._reopened << 32 | int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        self.conn.close()
