"""Pins shared by several gateways through PostgreSQL (`qwen_state_url`, storage/pg.py): a conversation pinned by
one gateway continues on another that serves the same web account.

The local SQLite store (pins.py) stays the synchronous read path (`Pinning.plan` reads it inline). A pin
written or dropped here is written to the database by a task, with a NOTIFY: the other gateways' listeners
copy that row into their local store at once (and every REFRESH_S, in case a notification was lost). Two
gateways continuing one chat at once is what Qwen Chat itself refuses (a stale `parent_id`): the turn that
lost is retried in a new chat (ErrorKind.STALE), as on one gateway. A pin written while the database is away
is kept (the newest per conversation, at most MAX_UNSHARED) and shared when it is back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from ...storage.health import StateUnavailable
from ...storage.pg import Database
from .pins import Pin, PinStore

log = logging.getLogger("qwen")

COMPONENT = "web_pins"
STEPS = ("CREATE TABLE web_pins (key TEXT PRIMARY KEY, chat_id TEXT, response_id TEXT, digest TEXT, "
         "count INTEGER, expires DOUBLE PRECISION)",)
_COLUMNS = "key, chat_id, response_id, digest, count, expires"
_UPSERT = (f"INSERT INTO web_pins ({_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (key) DO UPDATE SET "
           "chat_id=EXCLUDED.chat_id, response_id=EXCLUDED.response_id, digest=EXCLUDED.digest, "
           "count=EXCLUDED.count, expires=EXCLUDED.expires")


class SharedPinStore(PinStore):
    REFRESH_S = 5.0
    MAX_UNSHARED = 10_000  # pins held while the database is away (a pin is a few hundred bytes)

    def __init__(self, path: Path, ttl: float, db: Database) -> None:
        super().__init__(path, ttl)
        self.db = db
        self._listener: asyncio.Task | None = None
        self._unshared: dict[str, tuple[str, tuple]] = {}  # key -> its newest write the database could not take
        self.start()  # made on the event loop (configure): listening before the first request

    def start(self) -> None:
        """Listen for the other gateways' pins (on the event loop; at first use when there was none yet)."""
        if self._listener is None:
            with contextlib.suppress(RuntimeError):
                loop = asyncio.get_running_loop()
                self._listener = loop.create_task(self._listen(), name="qwen: shared pins")
                self.db.health.when_back(self._share_unshared, loop)

    def _share_unshared(self) -> None:
        """The database is back: the pins it could not take are shared now."""
        unshared, self._unshared = self._unshared, {}
        for key, (sql, args) in unshared.items():
            self._spawn(sql, args, key)

    async def _listen(self) -> None:
        await self.db.follow(COMPONENT, STEPS, "pin", self._copy, every=self.REFRESH_S, what="shared web pins")

    async def _copy(self, key: str | None = None) -> None:
        """The database's pins (one, or all live ones) into the local store; a pin gone there goes here."""
        where, args = ("key=%s", (key,)) if key is not None else ("expires > %s", (time.time(),))
        rows = await self.db.fetch(f"SELECT {_COLUMNS} FROM web_pins WHERE {where}", args)
        with self._lock:
            for r in rows:
                self._db.execute("INSERT OR REPLACE INTO pins VALUES (?,?,?,?,?,?)", tuple(r))
            if key is not None and not rows:
                self._db.execute("DELETE FROM pins WHERE key=?", (key,))

    def _spawn(self, sql: str, args: tuple, key: str) -> None:
        self.start()
        with contextlib.suppress(RuntimeError):  # no event loop (a script): local only
            self.db.background(self._write(sql, args, key), "qwen: share a pin")

    async def _write(self, sql: str, args: tuple, key: str) -> None:
        try:
            await self.db.amigrate(COMPONENT, STEPS)
            await self.db.execute(sql, args, notify=f"pin:{key}")
        except StateUnavailable:  # said once by the database's Health: shared when it is back
            self._unshared.pop(key, None)
            self._unshared[key] = (sql, args)
            if len(self._unshared) > self.MAX_UNSHARED:
                del self._unshared[next(iter(self._unshared))]  # the oldest: that conversation starts anew
        except Exception as e:  # this gateway keeps its pin; the others start a new chat
            log.warning("qwen: could not share a web pin: %s", type(e).__name__)

    def get(self, key: str, now: float | None = None) -> Pin | None:
        self.start()
        return super().get(key, now)

    def put(self, key: str, chat_id: str, response_id: str, digest: str, count: int,
            now: float | None = None) -> Pin:
        pin = super().put(key, chat_id, response_id, digest, count, now)
        row: tuple[Any, ...] = (key, pin.chat_id, pin.response_id, pin.digest, pin.count, pin.expires)
        self._spawn(_UPSERT, row, key)
        return pin

    def drop(self, key: str) -> None:
        super().drop(key)
        self._spawn("DELETE FROM web_pins WHERE key=%s", (key,), key)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            self._listener = None
        super().close()
