"""Conversation affinity shared by several gateways through PostgreSQL (`qwen_state_url`, storage/pg.py).

Behind a load balancer one conversation's turns reach different gateways; each must send them to the same
account. Memory answers first (affinity.py); a conversation memory does not know is read from the table
once (`fetch`: one SELECT on a new conversation's first turn on this gateway). A new or moved entry is
written by a task off the request path, with a NOTIFY carrying the account: the other gateways that know
the conversation move it at once, without reading. The database away: memory goes on alone, and a turn is
never refused for it (affinity only saves cache money). Expired rows are deleted now and then by a write.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .affinity import Affinity
from ...storage.pg import Database
from ...storage.health import StateUnavailable

log = logging.getLogger("qwen")

COMPONENT = "affinity"
STEPS = (
    "CREATE TABLE conversation_account (conversation TEXT PRIMARY KEY, account TEXT NOT NULL, "
    "expires DOUBLE PRECISION NOT NULL)",
    "CREATE INDEX conversation_account_expires ON conversation_account (expires)",
)
KIND = "affinity"  # NOTIFY payload "affinity:<key> <account> <expires>"
FOLLOW_S = 60.0  # the listener's full pass (a lost notification): memory's lapsed entries dropped
PRUNE_EVERY = 100  # writes between two deletions of expired rows
_UPSERT = ("INSERT INTO conversation_account VALUES (%s, %s, %s) ON CONFLICT (conversation) DO UPDATE SET "
           "account=EXCLUDED.account, expires=EXCLUDED.expires")


class SharedAffinity(Affinity):
    shared = True

    def __init__(self, db: Database, **kw) -> None:
        super().__init__(**kw)
        self.db = db
        self._writes = 0
        self._listener: asyncio.Task | None = None

    def start(self) -> None:
        """Follow the other gateways' writes (call on the event loop; returns at once)."""
        if self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(
                self.db.follow(COMPONENT, STEPS, KIND, self._heard, every=FOLLOW_S, what="shared conversation affinity"),
                name="qwen: shared affinity")

    async def fetch(self, key: str) -> str | None:
        try:
            await self.db.amigrate(COMPONENT, STEPS)
            rows = await self.db.fetch("SELECT account, expires FROM conversation_account WHERE conversation=%s",
                                       (key,))
        except StateUnavailable:
            return None  # said once by the database's Health: this turn goes where the pool sends new ones
        except Exception as e:
            log.warning("qwen: could not read a conversation's account from the shared database: %s", type(e).__name__)
            return None
        if not rows or rows[0][1] <= time.time():
            return None
        self.learn(key, rows[0][0], rows[0][1])
        return str(rows[0][0])

    def _share(self, key: str, account: str, expires: float) -> None:
        try:
            self.db.background(self._write(key, account, expires), "qwen: share a conversation's account")
        except RuntimeError:
            pass  # no event loop (a command): nothing to share with

    async def _write(self, key: str, account: str, expires: float) -> None:
        self._writes += 1
        try:
            await self.db.amigrate(COMPONENT, STEPS)
            await self.db.execute(_UPSERT, (key, account, expires), notify=f"{KIND}:{key} {account} {expires!r}")
            if self._writes % PRUNE_EVERY == 0:
                await self.db.execute("DELETE FROM conversation_account WHERE expires < %s", (time.time(),))
        except StateUnavailable:
            pass  # memory has it; the next turn after the outage writes it again
        except Exception as e:
            log.warning("qwen: could not share a conversation's account: %s", type(e).__name__)

    async def _heard(self, note: str | None) -> None:
        """Another gateway's write (or this one's, echoed): a conversation memory knows moves at once. None: the
        periodic pass, which drops memory's lapsed entries."""
        if note is None:
            now = time.time()
            for key in [k for k, (_, expires, _) in self._entries.items() if expires <= now]:
                del self._entries[key]
            return
        key, _, rest = note.partition(" ")
        account, _, expires = rest.partition(" ")
        hit = self._entries.get(key)
        if hit is not None and account and hit[0] != account:
            try:
                self.learn(key, account, float(expires))
            except ValueError:
                pass

    def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            self._listener = None
