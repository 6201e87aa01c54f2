"""`Database.follow`: a store's local copy kept in step with the shared database (NOTIFY, and a full reload now
and then), through restarts and outages — every store of a process on ONE session connection that LISTENs
(`Listener`), whatever the stores: a gateway asks one session of the database, and its pool can sit behind a
transaction-mode pooler (PgBouncer) while that one connection goes direct (`qwen_state_listen_url`).

Each time it connects, the listener checks that it hears: a notification sent through the pool must reach it
within HEAR_S, else one warning names qwen_state_listen_url (a LISTEN through a transaction-mode pooler hears
nothing). Its session is named `qwen-gateway <id> <host>:<pid>` (pg_stat_activity shows which gateways run, even
while their pool is down); `direct_fetch` reads over its route — what a store uses when the pool fails."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .health import PROBE_S, StateUnavailable
from .pg_faults import unavailable
from . import pg_pooler
from .pg_url import check_url, shown

log = logging.getLogger("qwen")
CHANNEL = "qwen_state"  # NOTIFY channel: payload "<kind>:<key>" (kind: account, credential, key, fact, …)
CONNECT_S = 10  # a new connection's connect_timeout (libpq's, whole seconds; a refused one fails at once): far above a
# busy machine's delay in forking a backend (issue 68)
# a transaction-mode pooler hands each transaction another server session: no statement prepared on one
NO_PREPARE: dict[str, Any] = {"prepare_threshold": None}
# TCP keepalives on the gateway's own connections (libpq's; ignored on a Unix socket): a peer gone without a word
# (a network cut, a machine powered off) is found in about KEEPALIVE_IDLE_S + 3 × KEEPALIVE_INTERVAL_S = 25 s
# rather than the kernel's default 2 h. The server side of the same: docs/deploy.md (tcp_keepalives_idle,
# idle_in_transaction_session_timeout). What the URL sets itself is left as it is.
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT = 10, 5, 3


def session_kwargs(url: str) -> dict[str, Any]:
    """NO_PREPARE and the keepalives the URL does not set: every connection a gateway or command opens."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        given = conninfo_to_dict(url)
    except Exception:  # the URL's own error is said where it is used
        given = {}
    keep = {"keepalives": 1, "keepalives_idle": KEEPALIVE_IDLE_S, "keepalives_interval": KEEPALIVE_INTERVAL_S,
            "keepalives_count": KEEPALIVE_COUNT}
    return {**NO_PREPARE, **{k: v for k, v in keep.items() if k not in given}}


def plain_connection(url: str) -> Any:
    """A blocking autocommit connection to `url`, as the gateway opens them (a thread's)."""
    import psycopg

    return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_S, **session_kwargs(url))
_listen_urls: dict[str, str] = {}  # qwen_state_url -> qwen_state_listen_url


def listen_through(url: str, listen_url: str) -> None:
    """The LISTEN of `url`'s database made to `listen_url` (the database itself, when `url` is a pooler in
    transaction mode); "" listens through `url`."""
    if listen_url:
        _listen_urls[check_url(url)] = check_url(listen_url)
    else:
        _listen_urls.pop(url, None)
CLOSE_S = 2.0  # closing the listener's connection, at most
RETRY_S = 5.0  # after a failure that is no outage, the listener tries again this much later
HEAR_S = 10.0  # how long the listener's own notification may take to reach it (far above a busy machine's delay)
CHECK = "listen-check"  # the notification kind of that check
SESSION_NAME = "qwen-gateway "  # the listener's application_name: this, the gateway's id, its host:pid
_gateway: tuple[int, str] = (0, "")


def gateway_id() -> str:
    """This gateway process's id on the shared database (its holds, its acknowledgements); made per process (a
    gateway forked from a process that made one gets its own)."""
    global _gateway
    if _gateway[0] != os.getpid():
        _gateway = (os.getpid(), secrets.token_hex(6))
    return _gateway[1]


def session_name() -> str:
    return f"{SESSION_NAME}{gateway_id()} {socket.gethostname()}:{os.getpid()}"[:63]  # NAMEDATALEN


def listen_url(db: Any) -> str:
    """The URL the listener connects to (`db`'s own when no listen URL is set)."""
    return _listen_urls.get(db.url, db.url)


async def direct_fetch(db: Any, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
    """One statement over the listener's route, on a connection of its own: when the pool fails (a pooler down
    while the database answers the listener), what a store reads or writes this way. Errors are raised."""
    import psycopg

    async def once() -> list[tuple]:
        async with await psycopg.AsyncConnection.connect(listen_url(db), autocommit=True, connect_timeout=CONNECT_S,
                                                         **session_kwargs(listen_url(db))) as conn:
            cur = await conn.execute(sql, args)
            return list(await cur.fetchall()) if cur.description else []

    return await asyncio.wait_for(once(), CONNECT_S + 5)

Reload = Callable[[str | None], Awaitable[None]]


class Listener:
    """The process's one LISTEN on a database: each notification "<kind>:<key>" handed to the reloads of that
    kind (`reload(key)`), and, each time it (re)connects, every reload told to read everything (`reload(None)`):
    what changed while nothing listened is read then. Runs while a follower is registered."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.kinds: dict[str, list[Reload]] = {}
        self.task: asyncio.Task | None = None
        self.connections = 0  # how many times it connected (a test counts them)
        self.hears: bool | None = None  # whether its own notification reached it (None: not known yet)
        self._check: tuple[str, asyncio.Event] | None = None  # the check under way: its token, heard

    def add(self, kind: str, reload: Reload) -> None:
        self.kinds.setdefault(kind, []).append(reload)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), name="qwen: the shared database's LISTEN")

    def remove(self, kind: str, reload: Reload) -> None:
        found = self.kinds.get(kind, [])
        if reload in found:
            found.remove(reload)
        if not found:
            self.kinds.pop(kind, None)
        if not self.kinds and self.task is not None:
            self.task.cancel()
            self.task = None

    async def _run(self) -> None:
        while True:
            conn = notes = checking = None
            try:
                conn = await self._connect()
                self.connections += 1
                checking = asyncio.get_running_loop().create_task(self._hear_self(), name="qwen: LISTEN check")
                await self._everything()  # what changed before this LISTEN began (or while it was away)
                notes = conn.notifies()
                async for note in notes:
                    kind, _, key = note.payload.partition(":")
                    if kind == CHECK and self._check is not None and key == self._check[0]:
                        self._check[1].set()
                    for reload in list(self.kinds.get(kind, ())):
                        await _safely(reload, key)
                raise ConnectionError("the notifications ended")  # a closed connection: listened to again
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if isinstance(e, StateUnavailable) or unavailable(e):
                    if not isinstance(e, StateUnavailable):
                        self.db.lost(e)  # the listener is often the first to see a restart
                    await asyncio.sleep(PROBE_S)  # refused at once (no network) until the probe sees it back
                else:
                    log.warning("qwen: listening to the shared database: %s (again in %.0f s)", type(e).__name__,
                                RETRY_S)
                    await asyncio.sleep(RETRY_S)
            finally:
                if checking is not None:
                    checking.cancel()
                # the notifications' generator holds the connection's lock until it is closed: closed first, or
                # the connection's close waits for it for ever (a cancelled task that never ends: the event
                # loop's shutdown hung on it under load); and neither may wait long
                with contextlib.suppress(Exception):
                    if notes is not None:
                        await asyncio.wait_for(notes.aclose(), CLOSE_S)
                    if conn is not None:
                        await asyncio.wait_for(conn.close(), CLOSE_S)

    async def _connect(self) -> Any:
        """A connection of its own that LISTENs on CHANNEL, to the listen URL when one is set."""
        import psycopg

        self.db.available()
        try:
            url = listen_url(self.db)
            conn = await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=CONNECT_S,
                                                         application_name=session_name(), **session_kwargs(url))
        except Exception as e:
            raise self.db.lost(e) from None
        try:
            await conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.OperationalError as e:
            await conn.close()
            raise self.db.lost(e) from None
        return conn

    async def _hear_self(self) -> None:
        """A notification through the pool (where qwen-keys and the other gateways send theirs) must reach this
        LISTEN within HEAR_S; one that does not is said once, with what to set. A pool that fails cannot tell."""
        with contextlib.suppress(Exception):  # the pool's route in session mode: said once (storage/pg_pooler.py)
            await asyncio.to_thread(pg_pooler.check, self.db.url, shown(self.db.url), self.db.max_size,
                                    lambda: plain_connection(self.db.url))
        token, heard = secrets.token_hex(6), asyncio.Event()
        self._check = (token, heard)
        try:
            await self.db.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{CHECK}:{token}"))
        except Exception:
            return
        try:
            await asyncio.wait_for(heard.wait(), HEAR_S)
        except TimeoutError:
            if self.hears is not False:
                log.warning("qwen: WARNING: the shared database's LISTEN did not hear this gateway's own notification "
                            "within %.0f s: key changes (a revoke), learned facts and account states reach it only "
                            "by its reads every few seconds. A pooler in transaction mode (PgBouncer) cannot LISTEN: "
                            "set qwen_state_listen_url to the database itself (docs/deploy.md).", HEAR_S)
            self.hears = False
        else:
            self.hears = True

    async def _everything(self) -> None:
        for reloads in list(self.kinds.values()):
            for reload in list(reloads):
                await _safely(reload, None)


async def _safely(reload: Reload, key: str | None) -> None:
    """A reload's failure is its store's (its follower reads everything again on its own schedule): never the
    listener's end."""
    try:
        await reload(key)
    except asyncio.CancelledError:
        raise
    except Exception as e:
        log.debug("qwen: a shared store could not read a change: %s", type(e).__name__)


async def follow(db: Any, component: str, steps: Sequence[str], kind: str, reload: Reload, *, every: float,
                 what: str, ready: asyncio.Event | None = None) -> None:
    """Keep a local copy in step with the database `db` (pg.Database), for ever (a task of its own): migrate,
    `reload(None)` (everything), then `reload(key)` for each NOTIFY "<kind>:<key>" (the database's one
    `Listener`), and `reload(None)` again every `every` seconds (a lost notification). The database away: the
    whole again once it is back (the Health says it once); another failure is logged (`what`) and the whole
    retried after `every`."""
    registered = False
    try:
        while True:
            try:
                await db.amigrate(component, steps)
                if not registered:
                    db.listener.add(kind, reload)
                    registered = True
                await reload(None)
                if ready is not None:
                    ready.set()
                await asyncio.sleep(every)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if isinstance(e, StateUnavailable) or unavailable(e):
                    await asyncio.sleep(PROBE_S)
                else:
                    log.warning("qwen: %s: %s (retrying in %.0f s)", what, type(e).__name__, every)
                    await asyncio.sleep(every)
    finally:
        if registered:
            db.listener.remove(kind, reload)
