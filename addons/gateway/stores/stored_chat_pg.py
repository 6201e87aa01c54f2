"""Stored chat completions shared by several gateways through PostgreSQL (`qwen_state_url`): the database is
the only copy (nothing reads them synchronously, so no local one), reached through the Responses store's
`Database` (one pool, one health: the database away is StateUnavailable, 503 `state_unavailable`, for a
`store: true` request before its upstream call, for every read, and for the write a client waits for).
Each completion is its owner's, kept as the shared stored Responses are (responses_pg.py: every TRIM_EVERY of an
owner's puts through a gateway its rows beyond PER_KEY go; every TRIM_EVERY puts a batch past MAX_AGE_S)."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable
from typing import Any

from ..jsonio import valid_text
from ..storage.pg import unavailable
from .responses_pg import EXPIRE_BATCH, TRIM_EVERY, SharedResponseStore
from .responses_schema import MAX_AGE_S
from .stored_chat import ChatStore, Row, shown

COMPONENT = "chat_completions"
STEPS = (
    "CREATE TABLE chat_completions (id TEXT PRIMARY KEY, seq BIGSERIAL, created DOUBLE PRECISION, model TEXT, "
    "metadata TEXT, completion TEXT, messages TEXT)",
    "CREATE INDEX chat_completions_seq ON chat_completions (seq)",
    # whose each completion is (the named key; '' for none, as every row stored before owners)
    "ALTER TABLE chat_completions ADD COLUMN owner TEXT NOT NULL DEFAULT ''",
    "CREATE INDEX chat_completions_by_owner ON chat_completions (owner, seq)",
    "CREATE INDEX chat_completions_created ON chat_completions (created)",
)
_PUT = ("INSERT INTO chat_completions (id, created, model, metadata, completion, messages, owner) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET created=EXCLUDED.created, "
        "model=EXCLUDED.model, metadata=EXCLUDED.metadata, completion=EXCLUDED.completion, "
        "messages=EXCLUDED.messages WHERE chat_completions.owner = EXCLUDED.owner")
_TRIM_OWNER = ("DELETE FROM chat_completions WHERE id IN (SELECT id FROM chat_completions WHERE owner = %s "
               "ORDER BY seq DESC OFFSET %s)")
_EXPIRE = ("DELETE FROM chat_completions WHERE id IN (SELECT id FROM chat_completions WHERE created < %s "
           "ORDER BY created LIMIT %s)")


class SharedChatStore(ChatStore):
    def __init__(self, base: SharedResponseStore, per_key: int | None = None) -> None:
        super().__init__(base, per_key)
        self.db = base.db
        self._puts = 0
        self._owner_puts: dict[str, int] = {}

    async def check(self) -> None:
        """The database connected and the table there (StateUnavailable at once while it is known away)."""
        self.db.available()
        try:
            await self.db.amigrate(COMPONENT, STEPS)
        except Exception as e:
            if unavailable(e):
                raise self.db.lost(e) from None
            raise

    def put(self, row: Row) -> Awaitable[None]:
        self._puts += 1
        self._owner_puts[row.owner] = self._owner_puts.get(row.owner, 0) + 1
        trim, expire = self._owner_puts[row.owner] % TRIM_EVERY == 0, self._puts % TRIM_EVERY == 0
        return self.db.background(self._put(row, trim, expire), "qwen: store a chat completion")

    async def _put(self, row: Row, trim: bool, expire: bool) -> None:
        await self.check()

        async def write(conn: Any) -> None:
            async with conn.transaction():
                await conn.execute(_PUT, (row.id, row.created, row.model, row.metadata, row.completion, row.messages,
                                          row.owner))
            if trim:
                await conn.execute(_TRIM_OWNER, (row.owner, self.per_key))
            if expire:
                await conn.execute(_EXPIRE, (time.time() - MAX_AGE_S, EXPIRE_BATCH))

        await self.db.run(write)

    async def _fetch(self, sql: str, args: tuple) -> list[tuple]:
        await self.check()
        return await self.db.fetch(sql, args)

    async def get(self, id: str, owner: str) -> dict | None:
        rows = await self._fetch("SELECT completion, metadata FROM chat_completions WHERE id=%s AND owner=%s",
                                 (valid_text(id), owner))
        return shown(*rows[0]) if rows else None

    async def messages(self, id: str, owner: str) -> list[dict] | None:
        rows = await self._fetch("SELECT messages FROM chat_completions WHERE id=%s AND owner=%s",
                                 (valid_text(id), owner))
        return json.loads(rows[0][0]) if rows else None

    async def index(self, owner: str) -> list[tuple]:
        return await self._fetch("SELECT id, model, metadata FROM chat_completions WHERE owner=%s ORDER BY seq",
                                 (owner,))

    async def completions(self, ids: list[str], owner: str) -> dict[str, dict]:
        rows = await self._fetch("SELECT id, completion, metadata FROM chat_completions WHERE owner=%s AND "
                                 "id = ANY(%s)", (owner, ids))
        return {rid: shown(completion, metadata) for rid, completion, metadata in rows}

    async def update(self, id: str, metadata: dict[str, str], owner: str) -> bool:
        await self.check()
        return await self.db.execute("UPDATE chat_completions SET metadata=%s WHERE id=%s AND owner=%s",
                                     (json.dumps(metadata), valid_text(id), owner)) > 0

    async def delete(self, id: str, owner: str) -> bool:
        await self.check()
        return await self.db.execute("DELETE FROM chat_completions WHERE id=%s AND owner=%s",
                                     (valid_text(id), owner)) > 0
