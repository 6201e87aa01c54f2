"""A team gateway: named client keys (`qwen-keys`) with limits and budgets, and what each key spent.

- **Who**: `check` (requestheaders, every request): one SHA-256 and one dict lookup in the keyring held in
  memory. Once any named key exists, a request needs one (or a key of the flat keys file, which keeps
  working alongside); an unknown or revoked key is a 401 and nothing goes upstream.
- **Limits** (`limit`, before the request goes upstream): budgets from memory (door/spend.py), then rpm
  and tpm through the limiter (door/limits.py), which asks the backend only when the local lease is spent.
- **Spend** (`finished`, an observer, after the answer): tokens Qwen reported, the request's cost
  (`ex.cost`, prices.py) and refusals, per key and UTC day; tpm grants settled with the real tokens.
- **Where**: `<state_dir>/keys.sqlite3` (one gateway: polled every second, written in batches from a thread),
  or the shared database (`qwen_state_url`: followed by NOTIFY, written from the event loop, rate limits
  exact across gateways). A running gateway sees a new, revoked or rotated key within a second (5 s at most
  on PostgreSQL when a notification is lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..auth.pg import Database
from ..errors import GatewayError
from ..observer import Observer
from ..prices import REQUESTS, TOKENS, USD
from . import refusals
from .access import INVALID_KEY, key_matches
from .keyring import Keyring, KeyRecord
from .keystore import FILENAME, SNAPSHOT, KeyStore
from .limits import RPM, TPM, Limiter, MemoryGrants, Taken
from .spend import SpendBook
from .team_pg import SharedGrants, SharedKeys

if TYPE_CHECKING:
    from mitmproxy import http

    from ..config import Config
    from ..exchange import Exchange

log = logging.getLogger("qwen")

TICK_S = 1.0  # SQLite: how often the keys file is looked at and spend written; both: leases swept
LOAD_WAIT_S = 10.0  # PostgreSQL at start: how long a request waits for the keys to be read once
INVALID = GatewayError(401, INVALID_KEY, type="invalid_request_error", code="invalid_api_key")
PENDING = GatewayError(503, "keys not read yet")  # a marker, never answered: see Team.check


class Team(Observer):
    def __init__(self) -> None:
        self.ring = Keyring()
        self.book = SpendBook()
        self.limiter = Limiter(MemoryGrants())
        self._where: tuple[Path, str] | None = None
        self._path: Path | None = None  # SQLite: the keys file (opened once it exists)
        self._store: KeyStore | None = None
        self._version: int | None = None
        self._shared: SharedKeys | None = None
        self._db: Database | None = None
        self._settled: asyncio.Event | None = None  # PostgreSQL: the first read of the keys succeeded or failed
        self._snapshot: Path | None = None
        self._warned = False
        self._tasks: list[asyncio.Task] = []
        self._running = False

    # ---- lifecycle -----------------------------------------------------------------------------------

    def configure(self, config: Config) -> None:
        where = (config.state_dir, config.state_url)
        if where == self._where:
            return
        self._stop()
        self._where = where
        if config.state_url:
            db = self._db = Database(config.state_url)
            self._shared, self._path = SharedKeys(db), None
            self.limiter = Limiter(SharedGrants(db))
            self._snapshot = config.state_dir / SNAPSHOT
            # what this gateway read last time: the door holds while the database does not answer
            self.ring = Keyring(self._read_snapshot(), provisional=True) if self._snapshot.exists() \
                else Keyring(loaded=False)
        else:
            self._shared, self._path, self._snapshot = None, config.state_dir / FILENAME, None
            self.limiter = Limiter(MemoryGrants())
            self.ring = Keyring()
        self.book = SpendBook()
        if self._path is not None and self._path.exists():  # at start-up, before the first request: read at once
            self._apply(*self._local_io({}, self.book.day))
        if self._running:
            self._start()

    def running(self) -> None:
        self._running = True
        self._start()

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._shared is not None:
            self._settled = asyncio.Event()
            self._tasks.append(loop.create_task(self._first_read(), name="qwen: named keys, first read"))
            self._tasks.append(self._shared.follow(self._reload))
        self._tasks.append(loop.create_task(self._ticks(), name="qwen: named keys' spend"))

    def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        if self._store is not None:
            self._store.close()
            self._store, self._version = None, None

    async def close(self) -> None:
        """Shutdown: what was charged is written."""
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        with contextlib.suppress(Exception):
            await self._flush()
        self._stop()

    def keys_exist(self) -> bool:
        """Whether named keys exist; before the shared keys were read (start-up), the database is asked
        (blocking, once: the exposure check of a listener beyond loopback)."""
        if self.ring.loaded or self._db is None:
            return self.ring.required
        try:
            store = KeyStore.remote(self._db)
            try:
                return bool(store.keys())
            finally:
                store.close()
        except Exception as e:
            log.warning("qwen: could not read the named keys from the shared database: %s", type(e).__name__)
            return False

    # ---- who ---------------------------------------------------------------------------------------

    def check(self, presented: bytes, flat: tuple[bytes, ...]) -> tuple[GatewayError | None, KeyRecord | None]:
        """(the refusal, the named key) of a request's key; the refusal is PENDING when the shared keys are
        not read yet and no flat key matched (`late_check` decides, in the request hook)."""
        ring = self.ring
        if ring.required:
            rec = ring.find(presented) if presented else None
            if rec is not None:
                return (refusals.revoked(rec) if rec.revoked else None), rec
        elif ring.loaded and not flat:
            return None, None  # no keys of any kind: the gateway is open (and loopback-only)
        if flat and key_matches(presented, flat):
            return None, None
        return (INVALID if ring.loaded else PENDING), None

    async def late_check(self, presented_digest: bytes, flat: bool) -> tuple[GatewayError | None, KeyRecord | None]:
        """A request that came before the shared keys were read: waits for them (LOAD_WAIT_S at most).
        `flat`: the gateway has flat keys (the request's key is none of them)."""
        if self._settled is not None and not self.ring.loaded:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), LOAD_WAIT_S)
        ring = self.ring
        if not ring.loaded:  # the database does not answer, and this gateway never read its keys
            if flat:
                return INVALID, None
            self._warn_unread()
            return None, None
        if not ring.required:
            return (INVALID if flat else None), None
        rec = ring.find_digest(presented_digest)
        if rec is None:
            return INVALID, None
        return (refusals.revoked(rec) if rec.revoked else None), rec

    def _warn_unread(self) -> None:
        if not self._warned:
            self._warned = True
            log.warning("qwen: WARNING: the shared database does not answer and this gateway has never read its "
                        "named client keys: it serves as a gateway without named keys (loopback clients, or the "
                        "flat keys) until it can read them (docs/keys.md)")

    @staticmethod
    def bind(ex: Exchange, rec: KeyRecord | None) -> None:
        if rec is not None:
            ex.key_name = rec.name
            if not rec.revoked:
                ex.extra["key"] = rec

    # ---- limits, before upstream ---------------------------------------------------------------------

    async def limit(self, ex: Exchange) -> None:
        """Raises the refusal when the exchange's key is over a budget or a rate limit."""
        rec = ex.extra.get("key")
        if not isinstance(rec, KeyRecord) or "taken" in ex.extra:
            return
        if rec.daily_tokens or rec.monthly_usd:
            spent = self.book.spent(rec.name)
            if rec.daily_tokens and spent.tokens_today >= rec.daily_tokens:
                raise refusals.over_daily(rec, spent.tokens_today)
            if rec.monthly_usd and spent.usd_month >= rec.monthly_usd:
                raise refusals.over_monthly(rec, spent.usd_month)
        taken: list[Taken] = []
        ex.extra["taken"] = taken
        if rec.rpm:
            taken.append(await self._take(rec, RPM, 1, rec.rpm, taken))
        if rec.tpm:
            want = max(1, ex.prompt_tokens_est or ex.client.size // 4)  # bytes/4: no count on the request's path
            if want > rec.tpm:
                self._give_back(taken)
                raise refusals.too_large(rec, want)
            taken.append(await self._take(rec, TPM, want, rec.tpm, taken))

    async def _take(self, rec: KeyRecord, kind: str, want: int, limit: int, taken: list[Taken]) -> Taken:
        try:
            got = self.limiter.take_now(rec.name, kind, want, limit)  # no waiting: memory, or the lease
            if got is None:
                got = await self.limiter.take(rec.name, kind, want, limit)
        except Exception as e:
            log.warning("qwen: could not count key %s's requests in the shared database: %s", rec.name,
                        type(e).__name__)
            self._give_back(taken)
            raise refusals.counts_unreachable(rec) from None
        if isinstance(got, Taken):
            return got
        self._give_back(taken)
        raise refusals.rate_limited(rec, kind, got)

    def _give_back(self, taken: list[Taken]) -> None:
        for t in taken:
            self.limiter.give_back(t)
        taken.clear()

    # ---- spend, after the answer ---------------------------------------------------------------------

    def finished(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        name = ex.key_name
        if not name:
            return
        if ex.cred is None and ex.error is not None and ex.error.code in refusals.REFUSAL_CODES:
            self.book.charge(name, refused=1)
            return
        usage = ex.usage if isinstance(ex.usage, dict) else {}
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        tokens = (prompt if type(prompt) is int else 0) + (completion if type(completion) is int else 0)
        cost, unit = ex.cost or 0.0, ex.cost_unit
        self.book.charge(name, requests=1, tokens=tokens, usd=cost if unit == USD else 0.0,
                         plan_requests=int(cost) if unit == REQUESTS else 0,
                         plan_tokens=int(cost) if unit == TOKENS else 0)
        taken = ex.extra.get("taken")
        # settled once, by the exchange that has Qwen's answer (a background response's POST, answered
        # `queued`, hands its allowance to the turn that runs on: the same list)
        if taken and (ex.usage is not None or ex.error is not None or ex.stream_error):
            for t in taken:
                if t.kind == TPM:
                    self.limiter.settle(t, tokens)
            taken.clear()

    # ---- the store -----------------------------------------------------------------------------------

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.limiter.sweep()
                await self._flush()
            except Exception:
                log.exception("qwen: named keys: could not write spend")

    async def _flush(self) -> None:
        if self._shared is not None:
            pending = self.book.take_pending()
            if not pending:
                return
            ok = False
            try:
                await self._shared.write_spend(pending)
                ok = True
            except Exception as e:
                log.warning("qwen: could not write named keys' spend to the shared database: %s", type(e).__name__)
            finally:
                self.book.written(pending, ok)
        elif self._path is not None:
            pending = self.book.take_pending()
            try:
                result = await asyncio.to_thread(self._local_io, pending, self.book.day)
            except Exception:
                self.book.written(pending, False)
                raise
            self.book.written(pending, True)
            if result[0] is not None:
                self._apply(*result)

    def _read_snapshot(self) -> tuple[KeyRecord, ...]:
        assert self._snapshot is not None
        store = KeyStore.local(self._snapshot.parent, SNAPSHOT)
        try:
            return store.keys()
        finally:
            store.close()

    def _save_snapshot(self, keys: tuple[KeyRecord, ...]) -> None:
        if self._snapshot is None:
            return
        try:
            store = KeyStore.local(self._snapshot.parent, SNAPSHOT)
            try:
                store.replace_all(keys)
            finally:
                store.close()
        except Exception as e:  # the state folder full or read-only: the keys are still in memory
            log.warning("qwen: could not keep a copy of the named keys in %s: %s", self._snapshot, type(e).__name__)

    def _local_io(self, pending: dict, today: str) -> tuple[tuple[KeyRecord, ...] | None, dict]:
        """In a thread: the keys file opened once it exists, spend written, everything read again when
        another process (qwen-keys, another gateway on the same folder) changed it."""
        assert self._path is not None
        if self._store is None:
            if not self._path.exists():
                return None, {}
            self._store = KeyStore.local(self._path.parent)
        if pending:
            self._store.write_spend(pending)
        version = self._store.data_version()
        if version == self._version:
            return None, {}
        self._version = version
        return self._store.keys(), self._store.spend(today=today)

    def _apply(self, keys: tuple[KeyRecord, ...] | None, spend: dict) -> None:
        if keys is not None:
            self.ring = Keyring(keys)
            self.book.replace(spend)

    async def _first_read(self) -> None:
        try:
            await self._reload(None)
        except Exception as e:
            log.warning("qwen: could not read the named client keys from the shared database: %s (retrying)",
                        type(e).__name__)
        finally:
            assert self._settled is not None
            self._settled.set()

    async def _reload(self, name: str | None) -> None:
        assert self._shared is not None
        keys = await self._shared.keys(name)
        spend = await self._shared.spend(self.book.day, name)
        if name is None:
            new = tuple(sorted(keys, key=lambda r: r.name))
            if self.ring.provisional or new != tuple(sorted(self.ring.records, key=lambda r: r.name)):
                await asyncio.to_thread(self._save_snapshot, new)
            self.ring = Keyring(new)
        else:
            self.ring = self.ring.replaced(name, keys[0] if keys else None)
        self.book.replace(spend, name)
