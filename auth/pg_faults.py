"""What a PostgreSQL failure says about the database, and the deadline that makes one that stopped answering a
failure too (pg.py uses them; storage.py says each outage once).

- `unavailable(e)`: a storage fault — the database cannot be used now (unreachable, restarting, hung, out of
  room, read-only, failing its disk) — whose work is kept for later; anything else is a bug, shown as one.
- `deadline` / `adeadline`: a statement with no answer after DEADLINE_S gets its connection's socket shut
  down, so the wait ends at once (a hung server answers neither the statement nor a cancel request); the
  server's own `statement_timeout` (STATEMENT_MS) cancels first, cleanly, what a live server takes too long over.
- `writable(url)`: the probe of a database that went away: a session, and a write that needs new disk pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
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
    """A statement's deadline: `expired` once it passed (the connection's socket shut down then)."""

    expired = False

    def cut(self, conn: Any) -> None:
        self.expired = True
        with contextlib.suppress(Exception):  # closed meanwhile: nothing left to cut
            sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
            try:
                sock.shutdown(socket.SHUT_RDWR)  # the waiting read sees the end: an OperationalError at once
            finally:
                sock.close()


@contextlib.contextmanager
def deadline(conn: Any, seconds: float = DEADLINE_S) -> Iterator[Expiry]:
    """Around blocking work on `conn` in a thread (the ledger's writer, the probe)."""
    expiry = Expiry()
    timer = threading.Timer(seconds, expiry.cut, (conn,))
    timer.daemon = True
    timer.start()
    try:
        yield expiry
    finally:
        timer.cancel()


@contextlib.contextmanager
def adeadline(conn: Any, seconds: float = DEADLINE_S) -> Iterator[Expiry]:
    """Around awaited work on `conn` (the event loop's pool). Not `asyncio.wait_for`: cancelling psycopg's wait
    sends a cancel request, which a hung server does not answer either."""
    expiry = Expiry()
    handle = asyncio.get_running_loop().call_later(seconds, expiry.cut, conn)
    try:
        yield expiry
    finally:
        handle.cancel()


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
