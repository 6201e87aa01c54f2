"""Where the team's keys and spend live, kept in step with the gateway's memory (tenancy/team.py reads only
memory): `<state_dir>/keys.sqlite3` (tenancy/source_folder.py) — opened once it exists, looked at every TICK_S in
a thread (SQLite's data version says whether another process wrote), read at once when qwen-keys tells this
gateway of a change, spend written in batches — or, with `qwen_state_url`, the shared database
(tenancy/source_pg.py): read at start, followed by NOTIFY (and every 5 s), each qwen-keys change acknowledged,
spend added every TICK_S from the event loop, and a local copy of the keys (tenancy/shared_copy.py) saved as each
change is applied, which keeps the key check when the database is down at start. A key revoked, rotated or
deleted is told to `ended` (its running requests end); a deleted key's spend is forgotten; the last key deleted
makes the gateway keyless again (tenancy/log_lines.py says so), unless it listens beyond loopback: then it stays
shut."""

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
from .store import FILENAME, SNAPSHOT, KeyStore
from .source_folder import FolderKeys, told
from .holds import Holds, MemoryHolds, SharedHolds
from .limits import Limiter, MemoryGrants
from .freeze import LoopWatch
from .outage import OutageNote
from .spend import SpendBook
from .team_pg import ACK, SPEND, SharedGrants, SharedKeys
from .source_pg import SharedFollow

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
    ended: list[Callable[[str, str], None]]  # told each name revoked, rotated or deleted (and which)


class KeySource:
    def __init__(self, state: TeamState) -> None:
        self.state = state
        self._where: tuple[Path, str] | None = None
        self._folder: FolderKeys | None = None  # SQLite: the keys file (opened once it exists)
        self._shared: SharedKeys | None = None
        self._follow: SharedFollow | None = None  # PostgreSQL: the keys followed (tenancy/source_pg.py)
        self._db: Database | None = None
        self._settled: asyncio.Event | None = None  # PostgreSQL: the first read of the keys succeeded or failed
        self._reading = asyncio.Lock()  # SQLite: one read of the keys file at a time (a tick's, a notice's)
        self._tasks: list[asyncio.Task] = []
        self._tick: asyncio.Future | None = None  # a tick's writes, under way: shutdown waits for them, never cuts
        self._running = False
        self.frozen = LoopWatch(self._read_again)  # a frozen loop: keys read again before a named key is decided
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
            self._shared, self._folder = SharedKeys(db), None
            st.limiter, st.holds = Limiter(SharedGrants(db)), SharedHolds(db)
            copy = KeyCopy(config.state_dir / SNAPSHOT, shown(config.state_url))  # the keys as enforced, on disk
            self._follow = SharedFollow(self._shared, copy, st, self._install, self.why)
            kept = copy.read()  # what this gateway enforced last: the key check holds while the database is down
            st.ring = Keyring(loaded=False)
            self._settled = asyncio.Event()  # a request before `running` waits for the read it starts too
            if kept is not None:
                self._install(Keyring(kept, provisional=True), first=True, where=log_lines.COPY)
            where_spend = "the shared database"
        else:
            self._shared, self._db, self._folder, self._follow = None, None, FolderKeys(config.state_dir), None
            self._settled = None
            st.limiter, st.holds = Limiter(MemoryGrants()), MemoryHolds()
            st.ring = Keyring()
            where_spend = FILENAME
        self._spend = OutageNote(f"qwen: could not write named keys' spend to {where_spend}: %s (kept in memory, "
                                 "written once it can be)", f"qwen: named keys' spend written to {where_spend} again")
        st.book = SpendBook()
        self.moved_to = ""
        if self._folder is not None and self._folder.path.exists():  # at start-up, before any request: read at once
            self._apply(*self._folder.io({}, st.book.day), first=True)
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
        if self._shared is not None and self._follow is not None and self._settled is not None:
            self._tasks.append(loop.create_task(self._follow.first_read(self._settled), name="qwen: named keys, first read"))
            self._tasks.append(self._shared.follow(self._follow.reload))
            self._shared.db.listener.add(ACK, self._follow.ack)
            self._shared.db.listener.add(SPEND, self._follow.spent)
        elif self._where is not None:  # a qwen-keys change applied before it returns (tenancy/source_folder.py)
            self._tasks.append(loop.create_task(told(self._where[0], self._read_told), name="qwen: qwen-keys' notices"))
        self._tasks.append(loop.create_task(self._ticks(), name="qwen: named keys' spend"))
        self._tasks.append(loop.create_task(self.frozen.watch(), name="qwen: named keys, a frozen loop"))

    async def _read_again(self) -> None:
        if self._follow is not None:
            await self._follow.reload(None)
        elif self._folder is not None:
            await self._read_told()

    def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        if self._shared is not None and self._follow is not None:
            self._shared.db.listener.remove(ACK, self._follow.ack)
            self._shared.db.listener.remove(SPEND, self._follow.spent)
        if self._folder is not None:
            self._folder.close()

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
        try:
            await self._flush()
        finally:  # alive, every few seconds, even while its spend cannot be written: its holds are not a corpse's
            await self.state.holds.tick()  # (tenancy/holds.py)

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
        elif self._folder is not None:
            pending = self.state.book.take_pending()
            try:
                async with self._reading:  # one read at a time (a notice from qwen-keys too)
                    result = await asyncio.to_thread(self._folder.io, pending, self.state.book.day)
            except Exception:
                self.state.book.written(pending, False)
                raise
            self.state.book.written(pending, True)
            if result[0] is not None:
                self._apply(*result)

    async def _read_told(self) -> None:
        """qwen-keys changed the keys file: read and applied now (its spend written at the next tick)."""
        assert self._folder is not None
        async with self._reading:
            result = await asyncio.to_thread(self._folder.io, {}, self.state.book.day)
        if result[0] is not None:
            self._apply(*result)

    def _apply(self, keys: tuple[KeyRecord, ...] | None, spend: dict, moved: str, first: bool = False) -> None:
        if moved:  # qwen-keys migrate took them while this gateway ran: shut until it is pointed there
            if not self.moved_to:
                log.warning("qwen: WARNING: the named client keys of %s were moved to the shared database %s "
                            "(qwen-keys migrate): every request is refused (503) until the gateway runs with "
                            "qwen_state_url set to it", self._folder and self._folder.path, moved)
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
        for name, change in old.changes(ring):
            if change == "deleted":
                self.state.book.forget(name)
                for told in self.state.deleted:
                    call_safely(told, name)
            for ended in self.state.ended:
                call_safely(ended, name, change)
        line = log_lines.change(old, ring, first=first, where=where, flat=self._flat, exposed=exposed)
        if line:
            (log.warning if "WARNING" in line else log.info)(line)


def _exposed() -> list[str]:
    """The listeners beyond loopback (mitmproxy's options); when they cannot be read, assumed to exist."""
    try:
        from mitmproxy import ctx

        return exposed_listeners(list(ctx.options.mode), ctx.options.listen_host)
    except Exception:
        return ["its listeners"]
