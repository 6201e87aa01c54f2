"""The local copy of the shared keys, `<state_dir>/keys-shared.sqlite3`: what this gateway enforces, on its
own disk, so that a gateway restarted while the shared database is down checks keys the same way (a revoked key
refused, a deleted one unknown). Every change the gateway applies — a full read, a key heard of by NOTIFY —
is saved before it takes effect: one SQLite transaction (all of it or nothing), synchronous=FULL (a power
cut keeps the last change), 0600 in the 0700 state folder. A copy that cannot be written is removed: a
gateway restarted during an outage then refuses every request rather than trust a copy that may hold a
revoked key as active. `qwen-keys` updates the copy in its own state folder as well (a gateway stopped
meanwhile restarts with the change)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from .ring import KeyRecord
from .schema import COPY_OF, read_note
from .store import KeyStore

log = logging.getLogger("qwen")


def _sorted(keys: tuple[KeyRecord, ...]) -> tuple[KeyRecord, ...]:
    return tuple(sorted(keys, key=lambda r: r.name))


class KeyCopy:
    """Used from one task at a time (tenancy/source.py takes turns)."""

    def __init__(self, path: Path, of: str = "") -> None:
        self.path = path
        self.of = of  # the database it copies, as logs show it (tenancy/place.py: a gateway pointed elsewhere)
        self.saved: tuple[KeyRecord, ...] | None = None  # what the file holds, sorted by name

    def read(self) -> tuple[KeyRecord, ...] | None:
        """At start (blocking): the keys it holds; None when there is no copy or it cannot be read (said)."""
        if not self.path.exists():
            return None
        try:
            store = KeyStore.local(self.path.parent, self.path.name)
            try:
                keys = store.keys()
                of = read_note(store.conn, COPY_OF)
            finally:
                store.close()
        except Exception as e:
            log.warning("qwen: could not read the copy of the named client keys in %s: %s (not used)", self.path,
                        type(e).__name__)
            return None
        # a copy of another database is written anew at the first read, even with the same keys
        self.saved = _sorted(keys) if not self.of or (of and of[0] == self.of) else None
        return keys

    async def keep(self, keys: tuple[KeyRecord, ...]) -> None:
        """`keys` saved, when the file holds anything else."""
        keys = _sorted(keys)
        if keys == self.saved:
            return
        try:
            await asyncio.to_thread(self.write, keys)
        except Exception as e:
            self.saved = None
            self._drop(e)
            return
        self.saved = keys

    def write(self, keys: tuple[KeyRecord, ...]) -> None:
        store = KeyStore.local(self.path.parent, self.path.name)
        try:
            store.conn.execute("PRAGMA synchronous=FULL")
            store.replace_all(keys, (COPY_OF, self.of) if self.of else None)
        finally:
            store.close()

    def _drop(self, e: Exception) -> None:
        try:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            what = "it was removed: restarted while the shared database is down, this gateway would refuse " \
                   "every request until it can read the keys"
        except OSError:
            what = "nor could it be removed: it may hold keys as they were before"
        log.warning("qwen: WARNING: could not save the copy of the named client keys in %s (%s); %s", self.path,
                    type(e).__name__, what)
