"""Named keys on the shared PostgreSQL database (`qwen_state_url`), from the gateway's event loop: the keys
followed (NOTIFY "key:<name>" from `qwen-keys` and from other gateways' spend, a full reload every
REFRESH_S) — read over the listener's route when the pool fails (a pooler down, the database up) — each
`qwen-keys` change acknowledged ("key-ack:<token>:<name>": `ack`), spend added in batches, and the rpm/tpm grants
(tenancy/limits.py) taken in one statement each. Nothing here blocks the loop; no request waits on the database
unless its key has rpm or tpm and no lease left."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from ..storage.pg import CHANNEL, Database, placeholders
from ..storage.pg_follow import direct_fetch, gateway_id, listen_url
from .budget_sql import ADD_MODEL_SPEND, model_spend_query
from .holds import Delivered
from .ring import KeyRecord
from .schema import COMPONENT, KEY_COLUMNS, PG_STEPS, Delta, Spent, add_spend_sql, record_of, spend_query, spent_of
from .store import with_models
from .limits import WINDOW_S, Answer, shared_chunk
from .outage import OutageNote

ACK = "key-ack"  # the notification of a qwen-keys change to acknowledge: "key-ack:<token>:<name>"
SPEND = "key-spend"  # a key's spend written by a gateway (no change of the key): "key-spend:<name>"
REFRESH_S = 5.0  # a lost notification: every key and its spend are read again within this
LEASE_S = 2.0
# The spend transaction holds its keys' rows of key_day: a gateway stuck inside it (frozen, cut off) must not hold
# them for everyone. It gives up a row another session holds after SPEND_LOCK_MS (its batch is kept and tried again
# the next second: nothing is lost, nothing counted twice), and the server ends it — its locks with it — when it
# sits idle inside it for SPEND_IDLE_MS (a healthy batch never idles: its statements follow one another).
SPEND_LOCK_MS = 1000
SPEND_IDLE_MS = 5000
SPEND_LIMITS = (f"SET LOCAL lock_timeout = {SPEND_LOCK_MS}; "
                f"SET LOCAL idle_in_transaction_session_timeout = {SPEND_IDLE_MS}")


class SharedGrants:
    """ingress/limits.Grants on the database: exact across gateways."""

    window = WINDOW_S + LEASE_S
    lease = LEASE_S

    def __init__(self, db: Database) -> None:
        self.db = db
        self._deltas: dict[int, int] = {}  # grant id -> tokens (or requests) to add; negative: given back
        self._note = OutageNote("qwen: could not settle named keys' rate grants in the shared database: %s (each "
                                "counts what it reserved until it leaves the window)",
                                "qwen: named keys' rate grants settled in the shared database again")

    def chunk(self, limit: int, want: int) -> int:
        return shared_chunk(limit, want)

    def try_now(self, name: str, kind: str, want: int, limit: int) -> None:
        return None  # the database is asked (when the lease is spent)

    async def take(self, name: str, kind: str, want: int, chunk: int, limit: int) -> Answer:
        await self.db.amigrate(COMPONENT, PG_STEPS)
        rows = await self.db.fetch("SELECT granted, grant_id, retry_after, used, reset_after "
                                   "FROM qwen_key_grant(%s, %s, %s, %s, %s, %s)", (name, kind, want, chunk, limit,
                                                                                    self.window))
        granted, grant, retry, used, reset = rows[0]
        return Answer(int(granted), int(grant), float(retry), int(used), float(reset))

    def settle(self, name: str, kind: str, grant: int, delta: int) -> None:
        self._deltas[grant] = self._deltas.get(grant, 0) + delta  # written by `flush`, every second

    async def flush(self) -> None:
        """The settlements of the last second, one statement per grant, in one transaction."""
        deltas, self._deltas = self._deltas, {}
        if not deltas:
            return
        try:
            pool = await self.db.pool()
            async with pool.connection() as conn, conn.transaction():
                for grant, delta in deltas.items():
                    await conn.execute("UPDATE key_grants SET amount = GREATEST(0, amount + %s) WHERE id = %s",
                                       (delta, grant))
        except Exception as e:  # a grant unsettled counts what was reserved until it leaves the window
            self._note.failed(e)
        else:
            self._note.worked()


class SharedKeys:
    """The keys and their spend, read and written on the event loop."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._add_spend = placeholders(add_spend_sql("GREATEST"))
        self._add_model_spend = placeholders(ADD_MODEL_SPEND)

    def follow(self, reload: Callable[[str | None], Awaitable[None]]) -> asyncio.Task:
        return asyncio.get_running_loop().create_task(
            self.db.follow(COMPONENT, PG_STEPS, "key", reload, every=REFRESH_S, what="named client keys"),
            name="qwen: named keys")

    async def keys(self, name: str | None = None) -> list[KeyRecord]:
        await self.db.amigrate(COMPONENT, PG_STEPS)  # once: a new database has no keys, not an error
        where, args = ("WHERE name = %s", (name,)) if name is not None else ("", ())
        return [record_of(r) for r in await self._fetch(f"SELECT {KEY_COLUMNS} FROM client_keys {where}", args)]

    async def spend(self, today: str, name: str | None = None) -> dict[str, Spent]:
        sql, args = spend_query(today, name)
        spent = {r[0]: spent_of(r) for r in await self._fetch(placeholders(sql), args)}
        sql, args = model_spend_query(today, name)
        return with_models(spent, await self._fetch(placeholders(sql), args))

    async def ack(self, token: str, refusing: bool) -> None:
        """This gateway applied the qwen-keys change `token` names (or refuses its key, unable to read it)."""
        await self._fetch("INSERT INTO key_acks (token, gateway, at, refusing) VALUES (%s, %s, "
                          "extract(epoch FROM clock_timestamp()), %s) ON CONFLICT DO NOTHING",
                          (token, gateway_id(), refusing))

    async def _fetch(self, sql: str, args: tuple) -> list[tuple]:
        """Through the pool; when it fails, over the listener's route (PgBouncer down, PostgreSQL up: the keys
        and a revoke are still read)."""
        try:
            return await self.db.fetch(sql, args)
        except Exception:
            if listen_url(self.db) == self.db.url:  # one route: the listener's is the pool's
                raise
            return await direct_fetch(self.db, sql, args)

    async def write_spend(self, deltas: dict[tuple[str, str], Delta], released: Sequence[int] = (),
                          delivered: Mapping[int, Delivered] | None = None) -> None:
        """One transaction, with the budget holds of the requests whose spend it adds deleted (counted once:
        tenancy/holds.py); the other gateways hear of each key at once. A released hold already gone was taken for
        a dead gateway's (this one starved that long): its `delivered` cost, counted then, is left out here. The
        spend of a key deleted before this gateway heard of it is not kept (its name may be used again, from
        zero)."""
        pool = await self.db.pool()
        names = sorted({n for n, _ in deltas})
        async with pool.connection() as conn, conn.transaction():
            await conn.execute(SPEND_LIMITS)
            if released:
                cur = await conn.execute("DELETE FROM key_holds WHERE id = ANY(%s) RETURNING id", (list(released),))
                gone = set(released) - {row[0] for row in await cur.fetchall()}
                counted = await self._settled(conn, gone, delivered or {})
                for hold, (tokens, usd) in counted.items():
                    cost = (delivered or {})[hold]
                    if (d := deltas.get((cost.name, cost.day))) is not None:
                        d.requests, d.tokens, d.usd = d.requests - 1, d.tokens - tokens, d.usd - usd
                        if cost.model in d.models:  # qwen_key_settle counted it on its model's day too
                            d.models[cost.model][0] -= tokens
                            d.models[cost.model][1] -= usd
            for (name, day), d in deltas.items():
                await conn.execute(self._add_spend, (name, day, *d.values()))
                for model, (tokens, usd) in d.models.items():
                    await conn.execute(self._add_model_spend, (name, model, day, int(tokens), usd))
            for table in ("key_day", "key_model_day"):
                await conn.execute(f"DELETE FROM {table} d WHERE d.name = ANY(%s) AND NOT EXISTS "
                                   "(SELECT 1 FROM client_keys c WHERE c.name = d.name)", (names,))
            for name in names:
                await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{SPEND}:{name}"))

    @staticmethod
    async def _settled(conn: Any, gone: set[int], delivered: Mapping[int, Delivered]) -> dict[int, tuple[int, float]]:
        """Of this gateway's holds another settled (it was taken for dead: frozen, cut off, the database's clock
        stepped), what that settlement counted, by its note in key_settled: {hold: (tokens, usd)} — only those it
        counted something for (a stream still running then counted nothing: its whole cost is this gateway's to
        write). A hold without a note (settled before the notes, or a day ago) is taken as counted at its delivered
        cost, as before."""
        if not gone:
            return {}
        cur = await conn.execute("DELETE FROM key_settled WHERE id = ANY(%s) RETURNING id, tokens, usd",
                                 (sorted(gone),))
        notes = {row[0]: row[1:] for row in await cur.fetchall()}
        out: dict[int, tuple[int, float]] = {}
        for hold in gone & set(delivered):
            if hold not in notes:
                out[hold] = (delivered[hold].tokens, delivered[hold].usd)
            elif notes[hold][0] is not None:
                out[hold] = (int(notes[hold][0]), float(notes[hold][1] or 0.0))
        return out
