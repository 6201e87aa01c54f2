"""Where the team's keys and spend live, kept in step with the gateway's memory (door/team.py reads only
memory): `<state_dir>/keys.sqlite3` — opened once it exists, looked at every TICK_S in a thread (SQLite's
data version says whether another process wrote), spend written in batches — or, with `qwen_state_url`, the
shared database: read at start, followed by NOTIFY (and every 5 s), spend added every TICK_S from the event
loop, and a local copy of the keys (`keys-shared.sqlite3`) that holds the door when the database is down at
start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..auth.pg import Database
from .keyring import Keyring, KeyRecord
from .keystore import FILENAME, SNAPSHOT, KeyStore
from .limits import Limiter, MemoryGrants
from .spend import SpendBook
from .team_pg import SharedGrants, SharedKeys

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger("qwen")

TICK_S = 1.0  # SQLite: how often the keys file is looked at; both: spend written and leases swept
LOAD_WAIT_S = 10.0  # PostgreSQL at start: how long a request waits for the first read of the keys


class TeamState(Protocol):
    """What the source keeps up to date (the Team)."""

    ring: Keyring
    book: SpendBook
    limiter: Limiter


class KeySource:
    def __init__(self, state: TeamState) -> None:
        self.state = state
        self._where: tuple[Path, str] | None = None
        self._path: Path | None = None  # SQLite: the keys file (opened once it exists)
        self._store: KeyStore | None = None
        self._version: int | None = None
        self._shared: SharedKeys | None = None
        self._db: Database | None = None
        self._settled: asyncio.Event | None = None  # PostgreSQL: the first read of the keys succeeded or failed
        self._snapshot: Path | None = None
        self._tasks: list[asyncio.Task] = []
        self._running = False

    def configure(self, config: Config) -> None:
        where = (config.state_dir, config.state_url)
        if where == self._where:
            return
        self._stop()
        self._where = where
        st = self.state
        if config.state_url:
            db = self._db = Database(config.state_url)
            self._shared, self._path = SharedKeys(db), None
            st.limiter = Limiter(SharedGrants(db))
            self._snapshot = config.state_dir / SNAPSHOT
            # what this gateway read last time: the door holds while the database does not answer
            st.ring = Keyring(self._read_snapshot(), provisional=True) if self._snapshot.exists() \
                else Keyring(loaded=False)
        else:
            self._shared, self._db, self._path, self._snapshot = None, None, config.state_dir / FILENAME, None
            st.limiter = Limiter(MemoryGrants())
            st.ring = Keyring()
        st.book = SpendBook()
        if self._path is not None and self._path.exists():  # at start-up, before the first request: read at once
            self._apply(*self._local_io({}, st.book.day))
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
            self.state.limiter.sweep(everything=True)
            await self.state.limiter.grants.flush()
            await self._flush()
        self._stop()

    async def first_read(self) -> None:
        """Until the shared keys were read once, or that failed (LOAD_WAIT_S at most)."""
        if self._settled is not None and not self.state.ring.loaded:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), LOAD_WAIT_S)

    def keys_exist(self) -> bool:
        """Whether named keys exist; before the shared keys were read (start-up), the database is asked
        (blocking, once: the exposure check of a listener beyond loopback)."""
        if self.state.ring.loaded or self._db is None:
            return self.state.ring.required
        try:
            store = KeyStore.remote(self._db)
            try:
                return bool(store.keys())
            finally:
                store.close()
        except Exception as e:
            log.warning("qwen: could not read the named keys from the shared database: %s", type(e).__name__)
            return False

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.state.limiter.sweep()
                await self.state.limiter.grants.flush()
                await self._flush()
            except Exception:
                log.exception("qwen: named keys: could not write spend")

    async def _flush(self) -> None:
        if self._shared is not None:
            pending = self.state.book.take_pending()
            if not pending:
                return
            ok = False
            try:
                await self._shared.write_spend(pending)
                ok = True
            except Exception as e:
                log.warning("qwen: could not write named keys' spend to the shared database: %s", type(e).__name__)
            finally:
                self.state.book.written(pending, ok)
        elif self._path is not None:
            pending = self.state.book.take_pending()
            try:
                result = await asyncio.to_thread(self._local_io, pending, self.state.book.day)
            except Exception:
                self.state.book.written(pending, False)
                raise
            self.state.book.written(pending, True)
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
            self.state.ring = Keyring(keys)
            self.state.book.replace(spend)

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
        spend = await self._shared.spend(self.state.book.day, name)
        if name is None:
            new = tuple(sorted(keys, key=lambda r: r.name))
            if self.state.ring.provisional or new != tuple(sorted(self.state.ring.records, key=lambda r: r.name)):
                await asyncio.to_thread(self._save_snapshot, new)
            self.state.ring = Keyring(new)
        else:
            self.state.ring = self.state.ring.replaced(name, keys[0] if keys else None)
        self.state.book.replace(spend, name)
