"""Per-account state that survives restarts: requests per day, cooldowns, needs-login flags (SQLite).

A state folder that is full or read-only (storage/health.py) never fails a request: memory has the state, and
what could not be written (counts, a changed row) is written when the folder is usable again."""

from __future__ import annotations

import atexit
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..days import utc_day
from ..storage.health import local_failure, local_health
from ..storage.sqlite import open_private_db, transaction
from .oauth_replies import redact

SCHEMA = """
CREATE TABLE IF NOT EXISTS account_day (account TEXT, day TEXT, requests INTEGER, PRIMARY KEY (account, day));
CREATE TABLE IF NOT EXISTS account_state (account TEXT PRIMARY KEY, cooldown_until REAL DEFAULT 0,
    needs_login INTEGER DEFAULT 0, login_mtime REAL DEFAULT 0, last_error TEXT);
"""


class RefreshLockTimeout(Exception):
    """Another gateway held the account's refresh lock too long."""


class AccountState:
    """Reads come from memory; state changes are written at once; request counts (one per request,
    on the hot path) are batched and written at most every FLUSH_S seconds and at exit."""

    FLUSH_S = 2.0

    def __init__(self, path: Path) -> None:
        self.path = path
        self.health = local_health(path.parent)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._rows: dict[str, dict] = {}
        self._unsaved: dict[str, dict] = {}  # rows the folder could not take: written when it can
        self._pending: dict[tuple[str, str], int] = {}
        self._flushed = time.monotonic()
        with self._lock:
            self._file()  # opened now if the folder takes it; else memory serves until it does
        self.health.when_back(self.flush)
        atexit.register(self.flush)

    def _file(self) -> sqlite3.Connection | None:
        """The SQLite file, opened at first use that can open it; None while the folder cannot take it (its
        Health says so once). The caller holds the lock."""
        if self._db is None and not self.health.down:
            try:
                self._db = open_private_db(self.path, timeout=5, setup=SCHEMA)
            except Exception as e:
                if local_failure(self.path.parent, e) is None:
                    raise
        return self._db

    def _row(self, account: str) -> dict:
        db = self._file()
        r = db.execute("SELECT cooldown_until, needs_login, login_mtime, last_error FROM account_state "
                       "WHERE account=?", (account,)).fetchone() if db is not None else None
        r = r or (0.0, 0, 0.0, None)
        return {"cooldown_until": r[0], "needs_login": bool(r[1]), "login_mtime": r[2], "last_error": r[3]}

    def get(self, account: str) -> dict:
        with self._lock:
            if account not in self._rows:
                self._rows[account] = self._row(account)
            return dict(self._rows[account])

    def set(self, account: str, **values) -> None:
        if values.get("last_error"):  # text from servers never reaches the file unredacted
            values["last_error"] = redact(values["last_error"], limit=500)
        with self._lock:
            # the file's row (another process, `qwen-auth`, may have changed it), what it could not take yet
            row = {**self._row(account), **self._unsaved.get(account, {}), **values}
            self._rows[account] = row
            self._unsaved[account] = row
            if self._write_file(self._save_rows):
                self._unsaved.clear()

    def _write_file(self, statements: Callable[[sqlite3.Connection], None]) -> bool:
        """`statements` in one transaction (the caller holds the lock): True when written, False when the folder
        cannot take it now (said once by its Health; the caller keeps what it wrote)."""
        db = self._file()
        if db is None:
            return False
        try:
            with transaction(db):
                statements(db)
        except Exception as e:
            if local_failure(self.path.parent, e) is None:
                raise
            return False
        self.health.ok()
        return True

    def _save_rows(self, db: sqlite3.Connection) -> None:
        for account, row in self._unsaved.items():
            db.execute("INSERT OR REPLACE INTO account_state VALUES (?,?,?,?,?)",
                       (account, row["cooldown_until"], int(row["needs_login"]), row["login_mtime"], row["last_error"]))

    def count_request(self, account: str) -> None:
        with self._lock:
            key = (account, utc_day())
            self._pending[key] = self._pending.get(key, 0) + 1
            due = time.monotonic() - self._flushed >= self.FLUSH_S
        if due:
            self.flush()

    def _take_pending(self) -> dict[tuple[str, str], int]:
        """The counts not yet written (the caller holds the lock), and the flush clock restarted."""
        pending, self._pending = self._pending, {}
        self._flushed = time.monotonic()
        return pending

    def _keep_pending(self, pending: dict[tuple[str, str], int]) -> None:
        """Counts that could not be written, back with the ones counted meanwhile (the caller holds the lock)."""
        for key, n in pending.items():
            self._pending[key] = self._pending.get(key, 0) + n

    def flush(self) -> None:
        with self._lock:
            if self._unsaved and self._write_file(self._save_rows):
                self._unsaved.clear()
            pending = self._take_pending()
            if not pending:
                return

            def add(db: sqlite3.Connection) -> None:
                for (account, day), n in pending.items():
                    db.execute("INSERT INTO account_day VALUES (?,?,?) ON CONFLICT(account, day) DO UPDATE SET "
                               "requests = requests + ?", (account, day, n, n))

            if not self._write_file(add):
                self._keep_pending(pending)

    # One refresher across machines (refreshing.py). A local file has nothing to share: the lock file is the
    # whole of it; the shared state (state_pg.py) adds a database lock and passes refreshed logins around.
    def refresh_lock(self, account: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Held around an account's refresh, besides its lock file (raises RefreshLockTimeout)."""
        return contextlib.nullcontext()

    async def published(self, account: str) -> dict | None:
        """The newest login another gateway published for the account."""
        return None

    async def publish(self, account: str, creds: dict) -> None:
        """A login this gateway refreshed, for the other gateways."""

    def requests_today(self, account: str) -> int:
        key = (account, utc_day())  # one day for the stored count and the pending one, across midnight too
        with self._lock:
            db = self._file()
            r = db.execute("SELECT requests FROM account_day WHERE account=? AND day=?", key).fetchone() \
                if db is not None else None
            return (r[0] if r else 0) + self._pending.get(key, 0)

    def close(self) -> None:
        self.flush()
        if self._db is not None:
            self._db.close()
