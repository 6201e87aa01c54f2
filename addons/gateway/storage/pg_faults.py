"""What a PostgreSQL failure says about the database, and the deadline that makes one that stopped answering a
failure too (pg.py uses them; health.py says each outage once).

- `unavailable(e)`: a storage fault — the database cannot be used now (unreachable, restarting, hung, out of
  room, read-only, failing its disk) — whose work is kept for later; anything else is a bug, shown as one.
- `deadline`: a statement with no answer after DEADLINE_S gets its connection's socket shut down, so the
  wait ends at once (a hung server answers neither the statement nor a cancel request); on the event loop's
  pool the server's own `statement_timeout` (STATEMENT_MS) cancels first, cleanly, what a live server takes
  too long over.
- `writable(url)`: the probe of a database that went away: a session, and a write that needs new disk pages.
- `libpq_params(url)`: a URL as libpq reads it, or what libpq says is wrong with it (pg_url.py's check).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

DEADLINE_S = 3.0  # a statement unanswered this long: its connection is cut, the database taken as down
STATEMENT_MS = 2000  # the server's statement_timeout on the gateway's own work (never on commands' reports)
PROBE_CONNECT_S = 2  # the probe's connect_timeout (libpq's, whole seconds, 2 at least)
PROBE_ROWS = 1000  # the probe writes this many 1 kB rows (a rolled-back temporary table): 1 MB of new pages
_STORAGE_CLASSES = ("08", "53", "57", "58")  # connection, insufficient resources, operator intervention, system
_READ_ONLY = "25006"  # read_only_sql_transaction: a standby, default_transaction_read_only


def unavailable(e: BaseException) -> bool:
    """`e` says the database cannot be used now, not that a statement is wrong: the connection failed or broke
    (no SQLSTATE; psycopg_pool's PoolTimeout), SQLSTATE classes 08, 53 (disk full, out of memory or
    connections), 57 (shut down, cancelled by statement_timeout), 58 (I/O error), 25006 (read-only), and the
    rest of psycopg's OperationalError family (deadlocks, lock timeouts) but class 54: a statement too large
    fails again whenever it is tried."""
    import psycopg

    if not isinstance(e, psycopg.Error):
        return False
    state = getattr(e, "sqlstate", None) or ""
    if state[:2] in _STORAGE_CLASSES or state == _READ_ONLY or isinstance(e, psycopg.InterfaceError):
        return True
    return isinstance(e, psycopg.OperationalError) and not state.startswith("54")


class Expiry:
    """One statement's deadline (`deadline`): `expired` once it passed and the connection's socket was shut."""

    def __init__(self, conn: Any, seconds: float) -> None:
        self.conn: Any = conn  # None once the statement is over: nothing to cut
        self.when = time.monotonic() + seconds
        self.expired = False

    def cut(self) -> None:
        """Called by the watchdog under its lock: the connection (so its socket) is still open here."""
        self.expired = True
        with contextlib.suppress(Exception):  # closed by the server meanwhile: nothing left to cut
            sock = socket.socket(fileno=os.dup(self.conn.pgconn.socket))
            try:
                sock.shutdown(socket.SHUT_RDWR)  # the waiting read sees the end: an OperationalError at once
            finally:
                sock.close()


class _Watchdog:
    """One thread for every deadline of the process (no thread nor event-loop timer per statement): it sleeps
    until the earliest one still armed. Arming and disarming take its lock, and so does a cut: a statement
    that ended is never cut, nor a socket that reused its number."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._due: list[tuple[float, int, Expiry]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, expiry: Expiry) -> None:
        with self._lock:
            heapq.heappush(self._due, (expiry.when, next(self._order), expiry))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="qwen: database deadlines", daemon=True)
                self._thread.start()
            elif self._due[0][2] is expiry:
                self._lock.notify()

    def disarm(self, expiry: Expiry) -> None:
        with self._lock:
            expiry.conn = None

    def _run(self) -> None:
        with self._lock:
            while True:
                now = time.monotonic()
                while self._due and (self._due[0][2].conn is None or self._due[0][0] <= now):
                    expiry = heapq.heappop(self._due)[2]
                    if expiry.conn is not None:
                        expiry.cut()
                self._lock.wait(self._due[0][0] - now if self._due else None)


_watchdog = _Watchdog()


@contextlib.contextmanager
def deadline(conn: Any, seconds: float = DEADLINE_S) -> Iterator[Expiry]:
    """Around work on `conn`, blocking (a thread) or awaited (the event loop). Not `asyncio.wait_for`:
    cancelling psycopg's wait sends a cancel request, which a hung server does not answer either."""
    expiry = Expiry(conn, seconds)
    _watchdog.arm(expiry)
    try:
        yield expiry
    finally:
        _watchdog.disarm(expiry)


def writable(url: str) -> bool:
    """True when the database takes a session and 1 MB of new pages (a full disk that freed a few bytes is not
    back yet); an error that is no storage fault (no TEMP privilege) cannot tell: the stores will."""
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=PROBE_CONNECT_S) as conn, deadline(conn):
        try:
            with conn.transaction(force_rollback=True):
                conn.execute(f"SET LOCAL statement_timeout = {STATEMENT_MS}")
                conn.execute("CREATE TEMPORARY TABLE qwen_probe (b text)")
                conn.execute("INSERT INTO qwen_probe SELECT repeat('x', 1000) FROM generate_series(1, %s)",
                             (PROBE_ROWS,))
        except psycopg.Error as e:
            if unavailable(e):
                raise
    return True


def libpq_params(url: str) -> dict[str, str]:
    """`url`'s parameters as libpq's own parser reads them ({} without psycopg: config.py says it is missing);
    ValueError with libpq's first line, the URL elided from it, when libpq cannot use it."""
    try:
        from psycopg import Error
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        return {}
    try:
        params = conninfo_to_dict(url)
    except Error as e:
        said = re.sub(r'"postgres(ql)?://[^"]*"?', "the URL", str(e)).strip().splitlines()
        raise ValueError(said[0] if said else type(e).__name__) from None
    return {k: str(v) for k, v in params.items() if v is not None}
