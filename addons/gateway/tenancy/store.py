"""Where named client keys and their spend are kept: `<state_dir>/keys.sqlite3` (0600, WAL) or, with
`qwen_state_url`, the shared PostgreSQL database. One set of statements for both (written for SQLite,
`storage/pg.placeholders` makes them psycopg's); the tables are tenancy/schema.py's.

`KeyStore` is the blocking side: `qwen-keys`, and the SQLite gateway's thread. The gateway's side on
PostgreSQL is tenancy/team_pg.py, with the same statements.

A state folder that cannot be written (a read-only mount) still has its keys read, into memory as last committed
(storage/sqlite.py's `read_only_copy`): the key check holds as they say, and every write fails as the folder's outage
(SQLite's "readonly database") until the folder takes writes again; then the file is opened as usual."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..days import utc_day
from ..storage.pg import CHANNEL, Database, placeholders
from ..storage.sqlite import open_private_db, read_only_copy, transaction, writable
from .budget_sql import ADD_MODEL_SPEND, model_spend_query
from .budgets import encode
from .ring import KeyRecord
from .schema import (COMPONENT, KEY_COLUMNS, LIMITS, PG_STEPS, SQLITE_SCHEMA, Tally, add_columns, add_spend_sql,
                     record_of, spend_query, spent_of, write_note)
from .schema import Delta as Delta
from .schema import Spent as Spent

FILENAME = "keys.sqlite3"
SNAPSHOT = "keys-shared.sqlite3"  # the shared keys as this gateway last read them (a database down at start)


def _open(path: Path) -> sqlite3.Connection:
    conn = open_private_db(path, timeout=10, setup=SQLITE_SCHEMA)
    add_columns(conn)
    return conn


class KeyNameError(ValueError):
    """What `qwen-keys` says when a name does or does not exist."""


class NoSuchKey(KeyNameError):
    """The name is no key's (the admin API's 404; any other KeyNameError is a conflict, 409)."""


class KeyStore:
    """Blocking access (a command, or a thread): a SQLite connection or a psycopg one."""

    def __init__(self, conn: Any, *, shared: bool, copy_of: Path | None = None) -> None:
        self.conn = conn
        self.shared = shared
        self.copy_of = copy_of  # SQLite: the file `conn` is a read-only copy of (its folder cannot be written)
        self._reopened = 0  # how many times the file was opened anew (a new data_version sequence)
        self._add_spend = self._sql(add_spend_sql("GREATEST" if shared else "MAX"))
        self._add_model_spend = self._sql(ADD_MODEL_SPEND)

    @classmethod
    def local(cls, state_dir: Path, filename: str = FILENAME) -> KeyStore:
        """The keys file, opened to read and write; read into memory when its folder cannot be written."""
        path = state_dir / filename
        if path.exists() and not writable(path):  # SQLite would open it read-only for good, or not at all
            copy = read_only_copy(path)
            add_columns(copy)  # a file of before, read into memory: the columns this gateway reads
            return cls(copy, shared=False, copy_of=path)
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

    def select(self, sql: str, args: tuple = ()) -> list[tuple]:
        """Rows of a statement written for SQLite (`?`), on either database."""
        return self._rows(sql, args)

    def execute(self, sql: str, args: tuple = ()) -> int:
        """A statement written for SQLite, on either database: the rows it changed."""
        return int(self.conn.execute(self._sql(sql), args).rowcount or 0)

    def notify(self, name: str) -> None:
        """Running gateways on the shared database reload the key at once (others poll the file)."""
        if self.shared:
            self.conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"key:{name}"))

    # ---- keys --------------------------------------------------------------------------------------

    def keys(self) -> tuple[KeyRecord, ...]:
        return tuple(record_of(r) for r in self._rows(f"SELECT {KEY_COLUMNS} FROM client_keys ORDER BY name"))

    def key(self, name: str) -> KeyRecord | None:
        rows = self._rows(f"SELECT {KEY_COLUMNS} FROM client_keys WHERE name = ?", (name,))
        return record_of(rows[0]) if rows else None

    def version(self, name: str) -> tuple | None:
        """What a change of `name` would change: its digest, revocation and last change (None: no such key)."""
        rows = self._rows("SELECT digest, revoked, changed FROM client_keys WHERE name = ?", (name,))
        return tuple(rows[0]) if rows else None

    def add(self, name: str, key_digest: bytes, limits: dict[str, float], budgets: str = "") -> None:
        """A new key (over a revoked one of the same name: its spend stays with the name). `budgets`: the other
        budgets' limits (tenancy/budgets.py `encode`)."""
        now = time.time()
        with self._tx():
            old = self.key(name)
            if old is not None and not old.revoked:
                raise KeyNameError(f"key {name!r} exists; revoke it first, `rotate` it for a new key, or `set` its limits")
            self.conn.execute(self._sql("DELETE FROM client_keys WHERE name = ?"), (name,))
            self.conn.execute(self._sql("INSERT INTO client_keys (name, digest, rpm, tpm, daily_tokens, monthly_usd, "
                                        "budgets, created, changed, revoked) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)"),
                              (name, key_digest.hex(), *(limits.get(k, 0) for k in LIMITS), budgets, now, now))
            self.notify(name)

    def update(self, name: str, **values: Any) -> KeyRecord:
        """Limits, a new digest (rotate) or the revocation of an existing key."""
        with self._tx():
            old = self.key(name)
            if old is None:
                raise NoSuchKey(f"no key named {name!r} (qwen-keys list shows them)")
            sets = ", ".join(f"{k} = ?" for k in values)
            self.conn.execute(self._sql(f"UPDATE client_keys SET {sets}, changed = ? WHERE name = ?"),
                              (*values.values(), time.time(), name))
            self.notify(name)
        new = self.key(name)
        assert new is not None
        return new

    def delete(self, name: str) -> None:
        """The key gone for good: its record (digest, limits) and its spend (the usage ledger keeps its
        requests under its name); the name may be used again, from zero."""
        with self._tx():
            if self.key(name) is None:
                raise NoSuchKey(f"no key named {name!r} (qwen-keys list shows them)")
            for table in ("client_keys", "key_day", "key_model_day") + (("key_grants",) if self.shared else ()):
                self.conn.execute(self._sql(f"DELETE FROM {table} WHERE name = ?"), (name,))
            self.notify(name)

    def replace_all(self, records: tuple[KeyRecord, ...], note: tuple[str, str] | None = None) -> None:
        """The snapshot: exactly these keys (digests and limits), and a note (the database it copies)."""
        now = time.time()
        with self._tx():
            if note is not None:
                write_note(self.conn, *note)
            self.conn.execute("DELETE FROM client_keys")
            for r in records:
                self.conn.execute(self._sql("INSERT INTO client_keys (name, digest, rpm, tpm, daily_tokens, "
                                            "monthly_usd, budgets, created, changed, revoked) VALUES "
                                            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                                  (r.name, r.digest.hex(), r.rpm, r.tpm, r.daily_tokens, r.monthly_usd,
                                   encode(r.budgets), now, now, now if r.revoked else None))

    # ---- spend -------------------------------------------------------------------------------------

    def spend(self, name: str | None = None, today: str | None = None) -> dict[str, Spent]:
        sql, args = spend_query(today or utc_day(), name)
        spent = {r[0]: spent_of(r) for r in self._rows(sql, args)}
        return with_models(spent, self._rows(*model_spend_query(today or utc_day(), name)))

    def write_spend(self, deltas: dict[tuple[str, str], Delta]) -> None:
        self._writable_again()
        with self._tx():
            for (name, day), d in deltas.items():
                self.conn.execute(self._add_spend, (name, day, *d.values()))
                for model, (tokens, usd) in d.models.items():
                    self.conn.execute(self._add_model_spend, (name, model, day, int(tokens), usd))

    def data_version(self) -> int:
        """SQLite: changes when another connection (a command, another gateway) committed, and when the file
        was opened anew (its folder writable again: what changed meanwhile is read)."""
        self._writable_again()
        return self._reopened << 32 | int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        self.conn.close()


def with_models(spent: dict[str, Spent], rows: list) -> dict[str, Spent]:
    """`spent` with each key's spend on each model (rows of budget_sql.model_spend_query), on either database."""
    for name, model, tokens, usd in rows:
        spent.setdefault(name, Spent()).models[model] = Tally(int(tokens or 0), float(usd or 0))
    return spent
