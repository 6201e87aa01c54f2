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
- `cause(e)`: what a failure says in an operator's words — a password refused or missing, a host name DNS does
  not know, a server down or unreachable — for the outage's log line, /health and the 503 (each is an outage:
  what it would record is kept).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import re
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

# A statement unanswered this long: its connection is cut, the database taken as down. Far above what a busy machine
# delays an answer by (issue 68: a starved gateway took its database for down after 3 s, "back" 0.5 s later); an
# answer that came but was not read yet, and time the process itself was not running, are not counted.
DEADLINE_S = 10.0
STATEMENT_MS = 8000  # the server's statement_timeout on the gateway's own work (never on commands' reports)
OVERSLEPT_S = 0.5  # a watchdog that wakes this much later than it meant to: the process was starved of CPU
PROBE_CONNECT_S = 2  # the probe's connect_timeout (libpq's, whole seconds, 2 at least)
PROBE_ROWS = 1000  # the probe writes this many 1 kB rows (a rolled-back temporary table): 1 MB of new pages
_STORAGE_CLASSES = ("08", "53", "57", "58")  # connection, insufficient resources, operator intervention, system
_READ_ONLY = "25006"  # read_only_sql_transaction: a standby, default_transaction_read_only


# libpq's and psycopg's words for a connection that failed (no SQLSTATE: the server never said one), in order
_CAUSES = (
    (re.compile(r"password authentication failed"), "password refused"),
    (re.compile(r"no password supplied"), "no password: libpq found none in PGPASSFILE, ~/.pgpass or PGPASSWORD"),
    (re.compile(r"resolve host .*Temporary failure|Temporary failure in name resolution"),
     "host name not resolved: DNS did not answer"),
    (re.compile(r"failed to resolve host|could not translate host name"), "unknown host: DNS has no address for it"),
    (re.compile(r'role "[^"]*" does not exist'), "unknown user"),
    (re.compile(r'database "[^"]*" does not exist'), "no such database"),
    (re.compile(r"pg_hba\.conf"), "connection not allowed by the server's pg_hba.conf"),
    (re.compile(r"Connection refused"), "down or unreachable: connection refused"),
    (re.compile(r"timeout expired|timed out"), "down or unreachable: no answer"),
    (re.compile(r"No route to host|Network is unreachable"), "down or unreachable: no route to it"),
    (re.compile(r"the database system is (starting up|shutting down|in recovery mode)"), "down: restarting"),
    (re.compile(r"server closed the connection|terminating connection|consuming input failed"),
     "down or unreachable: connection lost"),
)


def cause(e: BaseException) -> str:
    """`e` in an operator's words: a login refused, an unknown host, an outage; else its class (DiskFull,
    AdminShutdown, ReadOnlySqlTransaction: psycopg names each SQLSTATE)."""
    text = str(e)
    if not getattr(e, "sqlstate", None):
        for pattern, said in _CAUSES:
            if pattern.search(text):
                return said
    if type(e).__name__ in ("OperationalError", "InterfaceError", "PoolTimeout"):
        return f"down or unreachable: {type(e).__name__}"
    return type(e).__name__


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
        self.seconds = seconds
        self.when = time.monotonic() + seconds
        self.expired = False

    def answered(self) -> bool:
        """The server's answer (or end) is waiting in the socket, unread: it answered, the reader is late (a starved
        process): not a database that stopped answering. Called under the watchdog's lock, as `cut`."""
        with contextlib.suppress(Exception):
            ready, _, _ = select.select([self.conn.pgconn.socket], [], [], 0)
            return bool(ready)
        return False

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
        """A deadline is judged by what the server did, not by how long a starved process waited (issue 68): one
        whose answer waits unread is given its time again; and a watchdog that woke later than it meant to (the
        process had no CPU) first moves every deadline by as much."""
        with self._lock:
            meant: float | None = None  # when the watchdog meant to wake
            while True:
                now = time.monotonic()
                late = now - meant - OVERSLEPT_S if meant is not None else 0.0
                if late > 0:
                    self._due = [(when + late, order, e) for when, order, e in self._due]
                    heapq.heapify(self._due)
                    for _, _, expiry in self._due:
                        expiry.when += late
                while self._due and (self._due[0][2].conn is None or self._due[0][0] <= now):
                    expiry = heapq.heappop(self._due)[2]
                    if expiry.conn is None:
                        continue
                    if expiry.answered():
                        expiry.when = now + expiry.seconds
                        heapq.heappush(self._due, (expiry.when, next(self._order), expiry))
                        continue
                    expiry.cut()
                meant = self._due[0][0] if self._due else None
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


def connection(url: str, timeout: int = PROBE_CONNECT_S) -> Any:
    """A plain autocommit connection of its own, outside any `Database` (no pool, no outage recorded): the
    probe's, and a look at a database before the gateway is pointed at it (tenancy/place.py)."""
    import psycopg

    return psycopg.connect(url, autocommit=True, connect_timeout=timeout)


def writable(url: str) -> bool:
    """True when the database takes a session and 1 MB of new pages (a full disk that freed a few bytes is not
    back yet); an error that is no storage fault (no TEMP privilege) cannot tell: the stores will."""
    import psycopg

    with connection(url) as conn, deadline(conn):
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
    """`url`'s parameters as libpq's own parser reads them ({} without psycopg: settings/config.py says it is missing);
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
