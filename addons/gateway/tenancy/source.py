"""Where the team's keys and spend live, kept in step with the gateway's memory (tenancy/team.py reads only
memory): `<state_dir>/keys.sqlite3` — opened once it exists, looked at every TICK_S in a thread (SQLite's
data version says whether another process wrote), spend written in batches — or, with `qwen_state_url`, the
shared database: read at start, followed by NOTIFY (and every 5 s), spend added every TICK_S from the event
loop, and a local copy of the keys (tenancy/shared_copy.py) saved as each change is applied, which keeps the key check
when the database is down at start. A deleted key's spend is forgotten; the last key deleted makes the
gateway keyless again (tenancy/log_lines.py says so), unless it listens beyond loopback: then it stays shut."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..dispatch import call_safely
from ..storage.pg import Database, shown
from . import log_lines, place
from ..peers import exposed_listeners
from .shared_copy import KeyCopy
from .ring import Keyring, KeyRecord
from .schema import MOVED_TO, read_note
from .store import FILENAME, SNAPSHOT, KeyStore
from .holds import Holds, MemoryHolds, SharedHolds
from .limits import Limiter, MemoryGrants
from .outage import OutageNote
from .spend import SpendBook
from .team_pg import SharedGrants, SharedKeys

if TYPE_CHECKING:
    from ..settings.config import Config

log = logging.getLogger("qwen")

TICK_S = 1.0  # SQLite: how often the keys file is looked at; both: spend written and leases swept
LOAD_WAIT_S = 10.0  # PostgreSQL at start: how long a request waits for the first read of the keys
CLOSE_WAIT_S = 5.0  # shutdown: how long the spend's last writes may take (a tick's under way, then the rest)


class TeamState(Protocol):
    """What the source keeps up to date (the Team)."""

    ring: Keyring
    book: SpendBook
    limiter: Limiter
    holds: Holds
    deleted: list[Callable[[str], None]]  # told each name deleted


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
        self._copy: KeyCopy | None = None  # PostgreSQL: the keys as enforced, on this gateway's disk
        self._reloading = asyncio.Lock()  # one read of the shared keys at a time: applied (and saved) in order
        self._tasks: list[asyncio.Task] = []
        self._tick: asyncio.Future | None = None  # a tick's writes, under way: shutdown waits for them, never cuts
        self._running = False
        self._flat = self._allow_open = False
        self.moved_to = ""  # SQLite: the database the folder's keys were moved to while this gateway ran on it
        self._spend = OutageNote("", "")  # made for its storage by `configure`

    def configure(self, config: Config) -> None:
        self._flat, self._allow_open = bool(config.client_keys), config.allow_open
        where = (config.state_dir, config.state_url)
        if where == self._where:
            return
        self._stop()
        self._where = where
        st = self.state
        if config.state_url:
            db = self._db = Database(config.state_url)
            self._shared, self._path = SharedKeys(db), None
            st.limiter, st.holds = Limiter(SharedGrants(db)), SharedHolds(db)
            self._copy = KeyCopy(config.state_dir / SNAPSHOT, shown(config.state_url))
            kept = self._copy.read()  # what this gateway enforced last: the key check holds while the database is down
            st.ring = Keyring(loaded=False)
            self._settled = asyncio.Event()  # a request before `running` waits for the read it starts too
            if kept is not None:
                self._install(Keyring(kept, provisional=True), first=True, where=log_lines.COPY)
            where_spend = "the shared database"
        else:
            self._shared, self._db, self._path, self._copy = None, None, config.state_dir / FILENAME, None
            self._settled = None
            st.limiter, st.holds = Limiter(MemoryGrants()), MemoryHolds()
            st.ring = Keyring()
            where_spend = FILENAME
        self._spend = OutageNote(f"qwen: could not write named keys' spend to {where_spend}: %s (kept in memory, "
                                 "written once it can be)", f"qwen: named keys' spend written to {where_spend} again")
        st.book = SpendBook()
        self.moved_to = ""
        if self._path is not None and self._path.exists():  # at start-up, before the first request: read at once
            self._apply(*self._local_io({}, st.book.day), first=True)
        if self._running:
            self._start()

    def refusal(self, config: Config) -> str | None:
        """Why `config`'s place for the keys would let keyless requests in (tenancy/place.py), or None; blocking."""
        return place.refusal(config, self.state.ring, self._where)

    def running(self) -> None:
        self._running = True
        self._start()

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._where is not None:  # for qwen-keys: the store this folder's gateway uses
            place.store_note(*self._where)
        if self._shared is not None:
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
        """Shutdown: what was charged is written. A tick's write under way is finished first (cut, its
        spend would be back in the book only after this last write had looked)."""
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        if self._tick is not None:
            await asyncio.wait([self._tick], timeout=CLOSE_WAIT_S)
        try:
            await asyncio.wait_for(self._writes(everything=True), CLOSE_WAIT_S)
        except Exception as e:  # said: what was not written is lost with the process
            lost = sum(d.requests for d in (*self.state.book.pending.values(), *self.state.book.writing.values()))
            log.warning("qwen: named keys' spend not written at shutdown: %s (the spend of %d request%s lost)",
                        type(e).__name__, lost, "" if lost == 1 else "s")
        await self.state.holds.stop()  # no longer running: what it held is written (or lost, as said)
        self._stop()

    async def first_read(self) -> None:
        """Until the shared keys were read once, or that failed (LOAD_WAIT_S at most)."""
        if self._settled is not None and not self.state.ring.loaded:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), LOAD_WAIT_S)

    def why(self) -> str:  # what the shared database's last failure said ("" when it is not down)
        return (self._db.health.reason or "") if self._db is not None else ""

    def keys_exist(self) -> bool:
        """Whether named keys exist; before the shared keys were read, the database is asked (blocking, once)."""
        if self.state.ring.loaded or self._db is None:
            return self.state.ring.required
        try:
            with contextlib.closing(KeyStore.remote(self._db)) as store:
                return bool(store.keys())
        except Exception as e:  # unknown: as if there were some, every request refused until they are read
            log.warning("qwen: could not read the named keys from the shared database: %s (every request is "
                        "refused until they are read)", self.why() or type(e).__name__)
            return True

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self._tick = asyncio.ensure_future(self._writes())
            try:  # cancelled (shutdown), the writes go on: `close` waits for them
                await asyncio.shield(self._tick)
            except Exception as e:  # the storage away: the spend is kept for the next batch
                self._spend.failed(e)
            else:
                self._spend.worked()

    async def _writes(self, everything: bool = False) -> None:
        self.state.limiter.sweep(everything=everything)
        await self.state.limiter.grants.flush()  # says its own failures
        await self._flush()
        await self.state.holds.tick()  # alive, every few seconds: its holds are not a corpse's (tenancy/holds.py)

    async def _flush(self) -> None:
        if self._shared is not None:
            holds = self.state.holds
            pending = self.state.book.take_pending()
            released, delivered = holds.take_released() if isinstance(holds, SharedHolds) else ([], {})
            if not pending and not released:
                return
            ok = False
            try:  # a request's spend and its hold's end: one transaction
                await self._shared.write_spend(pending, released, delivered)
                ok = True
            finally:
                self.state.book.written(pending, ok)
                if not ok and isinstance(holds, SharedHolds):
                    holds.unwritten(released, delivered)
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

    def _local_io(self, pending: dict, today: str) -> tuple[tuple[KeyRecord, ...] | None, dict, str]:
        """In a thread: the keys file opened once it exists, spend written, everything read again when
        another process (qwen-keys, another gateway on the same folder) changed it. The spend of a key
        deleted meanwhile is not written (its name may be used again, from zero)."""
        assert self._path is not None
        if self._store is None:
            if not self._path.exists():
                return None, {}, ""
            self._store = KeyStore.local(self._path.parent)
        version = self._store.data_version()  # our own writes leave it as it is
        keys = self._store.keys() if version != self._version else None
        if keys is not None:
            names = {r.name for r in keys}
            pending = {k: d for k, d in pending.items() if k[0] in names}
        if pending:
            self._store.write_spend(pending)
        if keys is None:
            return None, {}, ""
        self._version = version
        moved = read_note(self._store.conn, MOVED_TO) if not keys else None
        return keys, self._store.spend(today=today), moved[0] if moved else ""

    def _apply(self, keys: tuple[KeyRecord, ...] | None, spend: dict, moved: str, first: bool = False) -> None:
        if moved:  # qwen-keys migrate took them while this gateway ran: shut until it is pointed there
            if not self.moved_to:
                log.warning("qwen: WARNING: the named client keys of %s were moved to the shared database %s "
                            "(qwen-keys migrate): every request is refused (503) until the gateway runs with "
                            "qwen_state_url set to it", self._path, moved)
            self.moved_to = moved
            self.state.ring = Keyring(loaded=False)
        elif keys is not None:
            self.moved_to = ""
            self._install(Keyring(keys), first=first)
            self.state.book.replace(spend)

    def _install(self, ring: Keyring, *, first: bool = False, where: str = "") -> None:
        """The keyring the key check reads from now on, and a line when what it means changed."""
        old = self.state.ring
        exposed: list[str] = []
        if not ring.records and old.required and not self._flat and not self._allow_open:
            exposed = _exposed()
            if exposed:  # keyless beyond loopback: never (the start-up check refuses it too)
                ring = Keyring(loaded=ring.loaded, locked=True)
        self.state.ring = ring
        for gone in old.by_name.keys() - ring.by_name.keys():
            self.state.book.forget(gone)
            for told in self.state.deleted:
                call_safely(told, gone)
        line = log_lines.change(old, ring, first=first, where=where, flat=self._flat, exposed=exposed)
        if line:
            (log.warning if "WARNING" in line else log.info)(line)

    async def _first_read(self) -> None:
        try:
            await self._reload(None)
        except Exception as e:
            log.warning("qwen: could not read the named client keys from the shared database: %s (retrying)",
                        self.why() or type(e).__name__)
        finally:
            assert self._settled is not None
            self._settled.set()

    async def _reload(self, name: str | None) -> None:
        """Every key (None), or one a NOTIFY named (a change, or only its spend): saved to the copy, then
        applied."""
        assert self._shared is not None and self._copy is not None
        async with self._reloading:
            keys = await self._shared.keys(name)
            spend = await self._shared.spend(self.state.book.day, name)
            old = self.state.ring
            first = old.provisional or not old.loaded
            if name is None:
                new: Keyring | None = Keyring(tuple(sorted(keys, key=lambda r: r.name)))
            else:
                rec = keys[0] if keys else None
                new = None if old.by_name.get(name) == rec and not first else old.replaced(name, rec)
            if new is not None:
                await self._copy.keep(new.records)  # before it takes effect: a restart never finds less
                self._install(new, first=first, where=log_lines.SHARED)
            self.state.book.replace(spend, name)


def _exposed() -> list[str]:
    """The listeners beyond loopback (mitmproxy's options); when they cannot be read, assumed to exist."""
    try:
        from mitmproxy import ctx

        return exposed_listeners(list(ctx.options.mode), ctx.options.listen_host)
    except Exception:
        return ["its listeners"]
