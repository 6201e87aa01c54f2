"""Shared state on PostgreSQL (`qwen_state_url=postgresql://user@host:port/db`): what every shared store uses.

- The URL's rules (pg_url.py, re-exported here): `check_url`, `shown`, `placeholders`, `advisory_key`.
- `Database`: one URL, one object per process (every store shares it): one event-loop pool (POOL_MAX; no
  round trip ever blocks mitmproxy's loop), plain connections for threads and commands, and one session that
  LISTENs for every store (pg_follow.py), to `qwen_state_listen_url` when set: the pool may sit behind
  PgBouncer in transaction mode (locks are transaction-scoped, nothing is prepared on the server).
- `migrate`: each store's numbered schema steps; `schema_version` says how far each component got, and an
  advisory lock makes two gateways starting at once take turns.
- Faults (health.py, pg_faults.py): a database that cannot be reached (whatever the driver raises), restarts,
  hangs (no answer within DEADLINE_S), runs out of room or turns read-only — at connection, migration or any
  statement — is one `StateUnavailable`, logged once per outage by the URL's `Health`; while it is away every
  caller is refused at once (no wait for a pool timeout); a connection the server ended while it sat in the
  pool (a restart) is replaced once, transparently; the probe (a session and a write) notices the return within
  PROBE_S and the pool is made anew (psycopg_pool's own reconnection backs off to minutes).

psycopg 3 is an optional dependency (the `postgres` extra): imported only when a URL is set."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from .pg_tasks import _ended, _pooled, _writes
from .pg_tasks import close_pools as close_pools
from .pg_tasks import drain as drain
from .pg_url import SCHEMES as SCHEMES  # the URL's rules: every store imports them from here
from .pg_url import StateUrlError as StateUrlError
from .pg_url import advisory_key as advisory_key
from .pg_url import check_url as check_url
from .pg_url import driver_missing as driver_missing
from .pg_url import placeholders as placeholders
from .pg_url import shown as shown
from .pg_faults import DEADLINE_S, STATEMENT_MS, cause, writable
from .pg_faults import deadline as deadline  # the stores import these from here
from .pg_faults import unavailable as unavailable
from .pg_schema import migrate_sync as migrate_sync
from .pg_follow import CHANNEL as CHANNEL
from .pg_follow import CONNECT_S, Listener, session_kwargs
from .pg_follow import listen_through as listen_through
from .health import Health, StateUnavailable, health_of

log = logging.getLogger("qwen")
# psycopg_pool logs each failed reconnection and each dead connection it discards; the URL's Health says it
# once per outage instead
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
logging.getLogger("psycopg").setLevel(logging.ERROR)  # and psycopg's note of each pipeline a failed batch ended
T = TypeVar("T")

POOL_MAX = 6  # the connections a gateway's stores share at most (docs/deploy.md: sizing)
POOL_WAIT_S = DEADLINE_S  # a request waits at most this for a connection (the database hung: an error, not a hang)
async def _configure(conn: Any) -> None:
    """A pooled connection's statements are cancelled by the server after STATEMENT_MS (a lock wait, a server
    too slow to serve): a clean error, before the client's own deadline cuts the connection."""
    await conn.execute(f"SET statement_timeout = {STATEMENT_MS}")


def _close_others(url: str) -> None:
    """The pools of other URLs' databases closed: the gateway was pointed at `url` (one shared database at a
    time), and a pool let go open leaves its workers for the collector to destroy mid-wait."""
    for db in [d for d in _pooled if isinstance(d, Database) and d.url != url]:
        with contextlib.suppress(RuntimeError):  # no event loop: nothing of it runs
            db.background(db.aclose(), "qwen: close the pool of a database no longer used")


_databases: dict[str, Database] = {}  # one per URL per process: its stores share the pool and the listener
class Database:
    """One PostgreSQL database. `pool()` is for the event loop (opened there, on first use); `connect()`
    gives a plain connection for a thread or a command; `migrate` runs a component's schema steps once;
    `listener` is the process's one LISTEN on it."""

    _made: bool
    def __new__(cls, url: str, *, max_size: int = POOL_MAX) -> Database:
        checked = check_url(url)
        db = _databases.get(checked)
        if db is None:
            db = _databases[checked] = super().__new__(cls)
            db._made = False
        return db

    def __init__(self, url: str, *, max_size: int = POOL_MAX) -> None:
        if not self._made:  # else the process's object for this URL, made by another store
            self._made = True
            self.listener = Listener(self)
            self.url, self.max_size = check_url(url), max_size
            self._pool: Any = None
            self._pool_outage = 0  # the health's outage count when the pool was opened: older pools are stale
            self._pool_lock: asyncio.Lock | None = None
            self._migrated: set[tuple[str, int]] = set()  # (component, steps) brought up to date
            self._mlock = threading.Lock()
            self._tasks: set[asyncio.Task] = set()
        # each store that opens it makes it the process's database again: no other's outage nor pool left behind
        self.health: Health = health_of(f"pg:{self.url}", f"the shared database {shown(self.url)}",
                                        "shared state database", lambda: writable(self.url), replaces="pg:",
                                        cause=cause)
        _close_others(self.url)

    def __repr__(self) -> str:
        return f"Database({shown(self.url)})"

    def lost(self, e: BaseException) -> StateUnavailable:
        """The database failed with `e`: down (logged once, with its cause), the error to raise."""
        return self.health.lost(cause(e))

    def hung(self) -> StateUnavailable:
        """A statement had no answer within DEADLINE_S: down (logged once), the error to raise."""
        return self.health.lost(f"no answer within {DEADLINE_S:g} s")

    def available(self) -> None:
        """StateUnavailable at once while the database is known to be away."""
        if self.health.down:
            raise self.health.error()

    def connect(self) -> Any:
        """A plain connection (a thread, a command); StateUnavailable when the database cannot be reached."""
        import psycopg

        self.available()
        # No connection is an outage whatever the driver raises: an OperationalError, a ProgrammingError for an
        # option libpq refuses, a UnicodeError for a host name the resolver refuses (so in `_reach`, `listen`)
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_S, **session_kwargs(self.url))
        except Exception as e:
            raise self.lost(e) from None

    def migrate(self, component: str, steps: Sequence[str]) -> None:
        """Blocking (call from a thread, or a command)."""
        with self._mlock:
            if (component, len(steps)) in self._migrated:
                return
            with self.connect() as conn:
                try:  # no deadline: an index built over a large table may take minutes
                    migrate_sync(conn, component, steps)
                except Exception as e:  # a step the full (or read-only) database refused: an outage too
                    if unavailable(e):
                        raise self.lost(e) from None
                    raise
            self._migrated.add((component, len(steps)))

    async def amigrate(self, component: str, steps: Sequence[str]) -> None:
        if (component, len(steps)) not in self._migrated:
            await asyncio.to_thread(self.migrate, component, steps)

    async def pool(self) -> Any:
        """The event loop's connection pool (autocommit connections), opened at first use and anew after an
        outage; StateUnavailable while the database is away."""
        self.available()
        if self._pool is not None and self._pool_outage == self.health.outages:
            return self._pool
        if self._pool_lock is None:
            self._pool_lock = asyncio.Lock()
        async with self._pool_lock:
            if self._pool is not None and self._pool_outage != self.health.outages:
                self._drop(self._pool)  # opened before the last outage: its connections are dead
            if self._pool is None:
                from psycopg_pool import AsyncConnectionPool

                outage = self.health.outages
                await self._reach()  # one attempt, failing at once when nothing listens (the pool would retry)
                pool = AsyncConnectionPool(self.url, min_size=1, max_size=self.max_size, open=False, timeout=POOL_WAIT_S,
                                           kwargs={"autocommit": True, "connect_timeout": CONNECT_S, **session_kwargs(self.url)},
                                           configure=_configure, name="qwen-state")
                try:
                    await pool.open(wait=True, timeout=CONNECT_S)
                except BaseException as e:
                    await pool.close()  # no workers left retrying: the next caller tries again
                    if isinstance(e, Exception):
                        raise self.lost(e) from None
                    raise
                self._pool, self._pool_outage = pool, outage
                _pooled.add(self)
        return self._pool

    async def _reach(self) -> None:
        import psycopg

        try:
            conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=CONNECT_S,
                                                         **session_kwargs(self.url))
        except Exception as e:
            raise self.lost(e) from None
        await conn.close()

    def _drop(self, pool: Any) -> None:
        """Forget `pool` (closed off the caller's path): the next caller opens a fresh one."""
        if self._pool is pool:
            self._pool = None
        with contextlib.suppress(RuntimeError):
            self.background(pool.close(), "qwen: close a stale database pool")

    async def run(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """`work(connection)` on a pooled connection. One the server ended while it sat in the pool (a restart)
        is replaced, once, and the work run again; the database away is StateUnavailable (at once while it
        is known to be away)."""
        for attempt in (1, 2):
            pool = await self.pool()
            conn = clock = None
            try:
                async with pool.connection() as conn:
                    with deadline(conn) as clock:
                        result = await work(conn)
                self.health.ok()
                return result
            except Exception as e:
                if clock is not None and clock.expired:
                    raise self.hung() from None  # not the restart below: a new connection would hang as well
                if not unavailable(e):
                    raise
                if attempt == 1 and conn is not None and conn.broken:  # every idle connection is as old
                    self._drop(pool)
                    continue
                raise self.lost(e) from None
        raise AssertionError("unreachable")

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Any]:
        """A pooled connection held for a block in one transaction (its locks transaction-scoped: they hold
        through a transaction-mode pooler too, and end with the block), checked first: one the server ended
        while it sat in the pool is replaced, once. The database away is StateUnavailable, in the block too."""
        for attempt in (1, 2):
            pool = await self.pool()
            try:
                async with pool.connection() as conn:
                    try:
                        with deadline(conn) as clock:
                            await conn.execute("BEGIN")
                            await conn.execute("SET LOCAL statement_timeout = 0")  # the block may wait on a lock
                    except Exception as e:
                        if clock.expired:
                            raise self.hung() from None
                        if attempt == 1 and unavailable(e) and conn.broken:
                            self._drop(pool)
                            continue
                        raise
                    try:
                        yield conn
                    finally:  # the transaction ends with the block (a broken connection leaves the pool anyway)
                        with contextlib.suppress(Exception), deadline(conn):
                            await conn.execute("COMMIT")
                    return
            except Exception as e:
                if unavailable(e):
                    raise self.lost(e) from None
                raise

    async def execute(self, sql: str, args: Sequence[Any] = (), *, notify: str | None = None) -> int:
        """One statement (and a NOTIFY with `notify` as payload, in the same transaction): its row count."""

        async def work(conn: Any) -> int:
            async with conn.transaction():
                cur = await conn.execute(sql, args)
                if notify is not None:
                    await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, notify))
                return cur.rowcount

        return await self.run(work)

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        async def work(conn: Any) -> list[tuple]:
            cur = await conn.execute(sql, args)
            return list(await cur.fetchall())

        return await self.run(work)

    def background(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        """`coro` as a task on the running loop, held until it ends (a write off the caller's path). Raises
        RuntimeError, with `coro` closed, when no loop runs (a command: the caller writes another way)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            coro.close()
            raise
        task = loop.create_task(coro, name=name)
        self._tasks.add(task)  # a task nobody references may be collected before it ends
        _writes.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_writes.discard)
        task.add_done_callback(_ended)
        return task

    @property
    def busy(self) -> bool:
        """A background task of this database's is still running."""
        return bool(self._tasks)

    async def follow(self, component: str, steps: Sequence[str], kind: str, reload: Callable[[str | None], Awaitable[None]],
                     *, every: float, what: str, ready: asyncio.Event | None = None) -> None:
        """Keep a local copy in step with the database, for ever (pg_follow.py)."""
        from .pg_follow import follow

        await follow(self, component, steps, kind, reload, every=every, what=what, ready=ready)

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
