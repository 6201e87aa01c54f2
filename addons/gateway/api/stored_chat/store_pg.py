"""Stored chat completions shared by several gateways through PostgreSQL (`qwen_state_url`): the database is
the only copy (nothing reads them synchronously, so no local one), reached through the Responses store's
`Database` (one pool, one health: the database away is StateUnavailable, 503 `state_unavailable`, for a
`store: true` request before its upstream call, for every read, and for the write a client waits for)."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any

from ...auth.pg import unavailable
from ...jsonio import valid_text
from ..responses.store_pg import TRIM_EVERY, SharedResponseStore
from .records import Row, shown
from .store import ChatStore

COMPONENT = "chat_completions"
STEPS = (
    "CREATE TABLE chat_completions (id TEXT PRIMARY KEY, seq BIGSERIAL, created DOUBLE PRECISION, model TEXT, "
    "metadata TEXT, completion TEXT, messages TEXT)",
    "CREATE INDEX chat_completions_seq ON chat_completions (seq)",
)
_PUT = ("INSERT INTO chat_completions (id, created, model, metadata, completion, messages) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET created=EXCLUDED.created, "
        "model=EXCLUDED.model, metadata=EXCLUDED.metadata, completion=EXCLUDED.completion, "
        "messages=EXCLUDED.messages")
_TRIM = "DELETE FROM chat_completions WHERE id IN (SELECT id FROM chat_completions ORDER BY seq DESC OFFSET %s)"


class SharedChatStore(ChatStore):
    def __init__(self, base: SharedResponseStore, max_items: int = 1000) -> None:
        super().__init__(base, max_items)
        self.db = base.db
        self._puts = 0

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
        return self.db.background(self._put(row, self._puts % TRIM_EVERY == 0), "qwen: store a chat completion")

    async def _put(self, row: Row, trim: bool) -> None:
        await self.check()

        async def write(conn: Any) -> None:
            async with conn.transaction():
                await conn.execute(_PUT, (row.id, row.created, row.model, row.metadata, row.completion, row.messages))
            if trim:
                await conn.execute(_TRIM, (self.max_items,))

        await self.db.run(write)

    async def _fetch(self, sql: str, args: tuple) -> list[tuple]:
        await self.check()
        return await self.db.fetch(sql, args)

    async def get(self, id: str) -> dict | None:
        rows = await self._fetch("SELECT completion, metadata FROM chat_completions WHERE id=%s", (valid_text(id),))
        return shown(*rows[0]) if rows else None

    async def messages(self, id: str) -> list[dict] | None:
        rows = await self._fetch("SELECT messages FROM chat_completions WHERE id=%s", (valid_text(id),))
        return json.loads(rows[0][0]) if rows else None

    async def index(self) -> list[tuple]:
        return await self._fetch("SELECT id, model, metadata FROM chat_completions ORDER BY seq", ())

    async def completions(self, ids: list[str]) -> dict[str, dict]:
        rows = await self._fetch("SELECT id, completion, metadata FROM chat_completions WHERE id = ANY(%s)", (ids,))
        return {rid: shown(completion, metadata) for rid, completion, metadata in rows}

    async def update(self, id: str, metadata: dict[str, str]) -> bool:
        await self.check()
        return await self.db.execute("UPDATE chat_completions SET metadata=%s WHERE id=%s",
                                     (json.dumps(metadata), valid_text(id))) > 0

    async def delete(self, id: str) -> bool:
        await self.check()
        return await self.db.execute("DELETE FROM chat_completions WHERE id=%s", (valid_text(id),)) > 0
