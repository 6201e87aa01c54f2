"""`AccountState` shared by several gateways through PostgreSQL (storage/pg.py).

The pool reads from memory, as with SQLite. A state change (cooldown, needs-login, last error) updates
memory at once and is written by a task on the event loop, with a NOTIFY in the same transaction: the
other gateways' listeners reload that account's row at once. A full reload every REFRESH_S is the fallback
for a lost notification (a listener reconnecting). Request counts are batched (FLUSH_S) as with SQLite.
Nothing here waits on the network on the caller's path. The database away (a restart, an outage): the
counts and rows it could not take stay in memory and are written when it is back (pg.py's Health)."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator

from ..settings.auth import AuthSettings
from ..days import utc_day
from ..storage.health import StateUnavailable
from ..storage.pg import CHANNEL, Database, advisory_key
from .oauth_replies import redact
from .state import AccountState, RefreshLockTimeout

log = logging.getLogger("qwen")

COMPONENT = "accounts"
STEPS = (
    "CREATE TABLE account_day (account TEXT, day TEXT, requests BIGINT NOT NULL DEFAULT 0, "
    "PRIMARY KEY (account, day))",
    "CREATE TABLE account_state (account TEXT PRIMARY KEY, cooldown_until DOUBLE PRECISION DEFAULT 0, "
    "needs_login BOOLEAN DEFAULT false, login_mtime DOUBLE PRECISION DEFAULT 0, last_error TEXT)",
    # an OAuth login refreshed by one gateway, for the others (the database holds credentials: protect it)
    "CREATE TABLE shared_credentials (account TEXT PRIMARY KEY, creds TEXT NOT NULL, expiry DOUBLE PRECISION)",
)
REFRESH_LOCK_WAIT_S = 60.0  # another gateway's refresh (an HTTP call with its own timeout) held the lock
_UPSERT = ("INSERT INTO account_state VALUES (%s,%s,%s,%s,%s) ON CONFLICT (account) DO UPDATE SET "
           "cooldown_until=EXCLUDED.cooldown_until, needs_login=EXCLUDED.needs_login, "
           "login_mtime=EXCLUDED.login_mtime, last_error=EXCLUDED.last_error")
_COUNT = ("INSERT INTO account_day VALUES (%s,%s,%s) ON CONFLICT (account, day) DO UPDATE SET "
          "requests = account_day.requests + EXCLUDED.requests")
_STATE_COLUMNS = "account, cooldown_until, needs_login, login_mtime, last_error"


def _default() -> dict:
    return {"cooldown_until": 0.0, "needs_login": False, "login_mtime": 0.0, "last_error": None}


def _row(r: tuple) -> dict:
    return {"cooldown_until": r[1] or 0.0, "needs_login": bool(r[2]), "login_mtime": r[3] or 0.0, "last_error": r[4]}


class SharedAccountState(AccountState):
    REFRESH_S = 5.0

    def __init__(self, db: Database) -> None:  # no SQLite file: the base's __init__ is not called
        self.db = db
        self._lock = threading.Lock()
        self._rows: dict[str, dict] = {}
        self._day_counts: dict[tuple[str, str], int] = {}  # committed counts, as last read
        self._pending: dict[tuple[str, str], int] = {}
        self._writing: dict[str, int] = {}  # accounts with a write in flight: a reload keeps memory's row
        self._unsaved: dict[str, dict] = {}  # rows the database could not take: written when it is back
        self._flushed = time.monotonic()
        self._listener: asyncio.Task | None = None
        self.ready: asyncio.Event | None = None
        atexit.register(self._flush_blocking)

    # ---- the event loop's side --------------------------------------------------------------------

    def start(self) -> None:
        """Migrate, load every row, then listen (call on the event loop; returns at once)."""
        if self._listener is None:
            self.ready = asyncio.Event()
            loop = asyncio.get_running_loop()
            self._listener = loop.create_task(self._listen(), name="qwen: shared state")
            self.db.health.when_back(self._write_unsaved, loop)

    def _write_unsaved(self) -> None:
        """The database is back: what it could not take is written now."""
        with self._lock:
            unsaved = dict(self._unsaved)
            for account in unsaved:
                self._writing[account] = self._writing.get(account, 0) + 1
        for account, row in unsaved.items():
            self.db.background(self._write(account, row), "qwen: share an account's state")
        self.flush()

    async def _listen(self) -> None:
        await self.db.follow(COMPONENT, STEPS, "account", self.reload, every=self.REFRESH_S,
                             what="shared account state", ready=self.ready)

    async def reload(self, account: str | None = None) -> None:
        where, args = ("WHERE account=%s", (account,)) if account is not None else ("", ())
        rows = await self.db.fetch(f"SELECT {_STATE_COLUMNS} FROM account_state {where}", args)
        counts = await self.db.fetch(f"SELECT account, day, requests FROM account_day WHERE day=%s"
                                     f"{' AND account=%s' if account is not None else ''}",
                                     (utc_day(), account) if account is not None else (utc_day(),))
        with self._lock:
            for r in rows:
                if not self._writing.get(r[0]) and r[0] not in self._unsaved:
                    self._rows[r[0]] = _row(r)
            for a, day, n in counts:
                self._day_counts[(a, day)] = int(n)

    async def _write(self, account: str, row: dict) -> None:
        saved = False
        try:
            await self.db.execute(_UPSERT, (account, row["cooldown_until"], bool(row["needs_login"]),
                                            row["login_mtime"], row["last_error"]), notify=f"account:{account}")
            saved = True
        except StateUnavailable:
            pass  # said once by the database's Health; written when it is back
        except Exception as e:
            log.warning("qwen: could not write %s's state to the shared database: %s", account, type(e).__name__)
            saved = True  # not the database's absence: writing it again would fail again
        finally:
            with self._lock:
                self._writing[account] -= 1
                if saved:
                    self._unsaved.pop(account, None)
                else:  # memory's row: newer than this write's, if the account changed meanwhile
                    self._unsaved[account] = dict(self._rows.get(account) or row)

    async def _write_counts(self, pending: dict[tuple[str, str], int]) -> None:
        async def add(conn) -> None:
            async with conn.transaction():
                for (account, day), n in pending.items():
                    await conn.execute(_COUNT, (account, day, n))

        try:
            await self.db.run(add)
            with self._lock:
                for key, n in pending.items():
                    self._day_counts[key] = self._day_counts.get(key, 0) + n
        except StateUnavailable:
            with self._lock:
                self._keep_pending(pending)  # written with the next flush once the database is back
        except Exception as e:
            log.warning("qwen: could not write request counts to the shared database: %s", type(e).__name__)

    # ---- one refresher across machines (auth/refreshing.py) -----------------------------------------

    @contextlib.asynccontextmanager
    async def refresh_lock(self, account: str) -> AsyncIterator[None]:
        """The account's advisory lock, held for the block (transaction-scoped: a pooler in transaction mode keeps
        the block's transaction on one server session, and the lock ends with it)."""
        await self.db.amigrate(COMPONENT, STEPS)
        async with self.db.session() as conn:
            key = advisory_key(account)
            try:
                await asyncio.wait_for(conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,)),
                                       REFRESH_LOCK_WAIT_S)
            except TimeoutError as e:
                raise RefreshLockTimeout(account) from e
            yield

    async def published(self, account: str) -> dict | None:
        await self.db.amigrate(COMPONENT, STEPS)
        rows = await self.db.fetch("SELECT creds FROM shared_credentials WHERE account=%s", (account,))
        try:
            creds = json.loads(rows[0][0]) if rows else None
        except ValueError:
            return None
        return creds if isinstance(creds, dict) else None

    async def publish(self, account: str, creds: dict) -> None:
        try:
            await self.db.amigrate(COMPONENT, STEPS)
            await self.db.execute("INSERT INTO shared_credentials VALUES (%s, %s, %s) ON CONFLICT (account) DO "
                                  "UPDATE SET creds=EXCLUDED.creds, expiry=EXCLUDED.expiry",
                                  (account, json.dumps(creds), float(creds.get("expiry_date") or 0)),
                                  notify=f"credential:{account}")
        except Exception as e:  # the refresh itself succeeded: this gateway goes on with it
            log.warning("qwen: could not publish %s's refreshed login: %s", account, type(e).__name__)

    # ---- AccountState's interface (synchronous, from memory) ---------------------------------------

    def get(self, account: str) -> dict:
        with self._lock:
            return dict(self._rows.get(account) or _default())

    def set(self, account: str, **values) -> None:
        if values.get("last_error"):
            values["last_error"] = redact(values["last_error"], limit=500)
        with self._lock:
            row = {**(self._rows.get(account) or _default()), **values}
            self._rows[account] = row
            self._writing[account] = self._writing.get(account, 0) + 1
        try:
            self.db.background(self._write(account, dict(row)), "qwen: share an account's state")
        except RuntimeError:  # no event loop (a command): write now
            try:
                with self.db.connect() as conn, conn.transaction():
                    conn.execute(_UPSERT, (account, row["cooldown_until"], bool(row["needs_login"]),
                                           row["login_mtime"], row["last_error"]))
                    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"account:{account}"))
            finally:
                with self._lock:
                    self._writing[account] -= 1

    def flush(self) -> None:
        with self._lock:
            if self.db.health.down:
                return  # kept: written when the database is back
            pending = self._take_pending()
        if not pending:
            return
        try:
            self.db.background(self._write_counts(pending), "qwen: share request counts")
        except RuntimeError:
            self._flush_blocking(pending)

    def _flush_blocking(self, pending: dict[tuple[str, str], int] | None = None) -> None:
        if pending is None:
            with self._lock:
                pending = self._take_pending()
        if not pending:
            return
        try:
            with self.db.connect() as conn, conn.transaction():
                for (account, day), n in pending.items():
                    conn.execute(_COUNT, (account, day, n))
        except Exception as e:
            log.warning("qwen: could not write %d request counts to the shared database: %s",
                        sum(pending.values()), type(e).__name__)

    def requests_today(self, account: str) -> int:
        key = (account, utc_day())
        with self._lock:
            return self._day_counts.get(key, 0) + self._pending.get(key, 0)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            self._listener = None
        self.flush()


def shared_state(settings: AuthSettings) -> SharedAccountState | None:
    """The shared state when the settings name a database and an event loop runs (the gateway), else None
    (SQLite: commands such as qwen-auth keep their own file)."""
    if not settings.state_url:
        return None
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return None
    state = SharedAccountState(Database(settings.state_url))
    state.start()
    return state
