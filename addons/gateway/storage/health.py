"""Whether the gateway's state storage can be used now: the shared PostgreSQL database (`qwen_state_url`,
pg.py) or the local state folder (SQLite files, sqlite.py), and the one error that says it cannot.

- `StateUnavailable`: what every store raises when its storage cannot be used; the gateway answers it 503
  `state_unavailable` in the client's dialect (one mapping, in the core's errors.py), never a 500.
- `Health`: one storage's availability, shared by every store of that storage in the process. The first
  failure logs one line (what and why) and starts a probe thread that checks every PROBE_S whether the
  storage is back; its return logs one line and calls back the stores that kept rows meanwhile (the usage
  ledger, request counts, account state, web pins), which then write them. Between the two lines callers
  learn it from `down` at once, without trying (no wait on a dead database, no line per request).
- The local folder: which errors mean "full" or "not writable" (`local_fault`), and `check_local`, the cheap
  test made before a request that needs the folder (a statvfs: refused before any upstream call when less
  than LOCAL_MIN_FREE bytes are free).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("qwen")

PROBE_S = 0.5  # while a storage is down, how often the probe looks for its return
PROBE_FIRST_S = (0.1, 0.2, 0.3)  # sooner at first: a restart is over in well under a second
LOCAL_MIN_FREE = 1 << 20  # a state folder with less free space is full: a stored Response needs a few pages


class StateUnavailable(Exception):
    """The gateway's state storage cannot be used now. The message is the client's (no path, no URL)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Health:
    """One storage: up, or down since `since` for `reason` (a short text: "disk full", "OperationalError").

    The probe's word is only a hint (free space is not a write that worked): when it says the storage is
    back, the stores try (`trying`), and the first use that works (`ok`) says it is back; one that fails
    meanwhile keeps it the same outage (no new line)."""

    def __init__(self, what: str, public: str, probe: Callable[[], bool],
                 cause: Callable[[BaseException], str] | None = None) -> None:
        self.what = what  # for the log: "the shared database postgresql://gw@db:5432/qwen", "the state folder /x"
        self.public = public  # for clients: "shared state database", "local storage"
        self.probe = probe  # True when the storage looks usable again (called from the probe thread)
        # a probe's failure in the storage's words: stores refuse at once while it is down, so the probe alone
        # learns that the cause changed (a shutdown's sessions ended, then nothing listens)
        self.cause = cause
        self.reason: str | None = None
        self.trying = False  # the probe saw it back; no use has worked yet
        self.since = 0.0
        self.outages = 0  # how many times it went down (a pool opened before the last one is stale)
        self._lock = threading.Lock()
        self._back: list[tuple[Callable[[], None], asyncio.AbstractEventLoop | None]] = []
        self._prober: threading.Thread | None = None

    @property
    def down(self) -> bool:
        return self.reason is not None

    def error(self) -> StateUnavailable:
        return StateUnavailable(f"The gateway's {self.public} is unavailable ({self.reason or 'an error'}); "
                                "try again later.")

    def lost(self, reason: str) -> StateUnavailable:
        """The storage failed: down from now (one log line when this starts an outage); the error to raise."""
        with self._lock:
            new = self.reason is None and not self.trying
            changed = not new and self.reason is not None and reason != self.reason
            if self.reason is None:
                self.outages += 1
            self.reason, self.trying = reason, False
            if new:
                self.since = time.monotonic()
            if self._prober is None:
                prober = threading.Thread(target=self._probing, name="qwen: storage probe", daemon=True)
                with contextlib.suppress(RuntimeError):  # the interpreter is ending: no probe, nobody to call back
                    prober.start()
                    self._prober = prober
        if new:
            log.warning("qwen: %s is unavailable (%s): what needs it is refused (503 state_unavailable) and "
                        "what it would record is kept in memory until it is back", self.what, reason)
        elif changed:  # the same outage, its cause now another (a shutdown's sessions ended, then nothing listens)
            log.warning("qwen: %s is still unavailable, now %s", self.what, reason)
        return self.error()

    def _cause_of(self, e: BaseException) -> str | None:
        try:
            return self.cause(e) if self.cause is not None else None
        except Exception:  # noqa: BLE001  (the cause unsaid: the outage goes on as it was)
            return None

    def _still(self, reason: str) -> None:
        """The probe's failure says another cause than the outage's: it is the cause now (said once)."""
        with self._lock:
            changed = self.reason is not None and reason != self.reason
            if changed:
                self.reason = reason
        if changed:
            log.warning("qwen: %s is still unavailable, now %s", self.what, reason)

    def ok(self) -> None:
        """A use of the storage worked (cheap when nothing was wrong: called on every write)."""
        if self.trying:
            with self._lock:
                was, self.trying = self.trying, False
            if was:
                log.info("qwen: %s is back after %.1f s", self.what, time.monotonic() - self.since)

    def forget(self) -> None:
        """No store uses this storage any more (the gateway was pointed elsewhere): its outage is no longer
        listed nor probed. A store that still uses it finds out again, with a line of its own."""
        with self._lock:
            self.reason, self.trying = None, False  # the probe ends at its next look, calling nobody back

    def when_back(self, callback: Callable[[], None], loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Call `callback` each time the probe sees the storage back (a store that kept rows writes them): on
        `loop` when given, else in the probe's thread (then it must be thread-safe)."""
        with self._lock:
            if (callback, loop) not in self._back:
                self._back.append((callback, loop))

    def _probing(self) -> None:
        """Until the probe sees the storage back: then the stores are called back, and the thread ends (a new
        failure starts another)."""
        for delay in itertools.chain(PROBE_FIRST_S, itertools.repeat(PROBE_S)):
            time.sleep(delay)
            now: str | None = None
            try:
                ok = self.probe()
            except Exception as e:  # noqa: BLE001  (still away, whatever the way it says so)
                ok = False
                now = self._cause_of(e)
            if now is not None:
                self._still(now)
            with self._lock:
                if ok or self.reason is None:
                    self._prober = None  # decided under the lock: lost() starts a new one from now on
                    back = self.reason is not None
                    self.reason, self.trying = None, self.trying or back
                    callbacks = list(self._back) if back else []
                    break
        for callback, loop in callbacks:
            try:
                if loop is None:
                    callback()
                elif not loop.is_closed():
                    loop.call_soon_threadsafe(callback)
            except Exception:
                log.exception("qwen: a store could not resume after %s came back", self.what)


_healths: dict[str, Health] = {}
_healths_lock = threading.Lock()


def health_of(key: str, what: str, public: str, probe: Callable[[], bool], *, replaces: str = "",
              cause: Callable[[BaseException], str] | None = None) -> Health:
    """The process's one Health for a storage (a database URL, a folder): one line per outage, not per store.
    `replaces`: the key's kind ("pg:") when the process uses one storage of that kind at a time — a gateway one
    `qwen_state_url` —: the others are forgotten, so a URL set and set back leaves no outage behind it in
    /health and readiness, and no probe of a database nobody uses."""
    with _healths_lock:
        found = _healths.get(key)
        if found is None:
            found = _healths[key] = Health(what, public, probe, cause)
        others = [h for k, h in _healths.items() if replaces and k.startswith(replaces) and k != key]
    for other in others:
        other.forget()
    return found


def unavailable() -> list[dict]:
    """The storages that are down now, for /health: what (in clients' words, no path or URL), why, how long."""
    now = time.monotonic()
    with _healths_lock:
        healths = list(_healths.values())
    return [{"name": h.public, "state": "unavailable", "reason": h.reason, "for_s": round(now - h.since, 1)}
            for h in healths if h.down]


# ---- the local state folder -------------------------------------------------------------------------------


def free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    # root may write into the blocks reserved for it (f_bfree); anyone else only into f_bavail
    return (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize


def _writable(folder: Path) -> bool:
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return existing.is_dir() and os.access(existing, os.W_OK) and free_bytes(existing) >= LOCAL_MIN_FREE


def local_health(folder: Path) -> Health:
    folder = Path(folder)
    return health_of(f"local:{folder}", f"the state folder {folder}", "local storage",
                     lambda: _writable(folder))


_FULL = {errno.ENOSPC, errno.EDQUOT}
_READONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


def local_fault(e: BaseException) -> str | None:
    """What an error from writing the state folder says about the folder ("disk full", "read-only", …), or
    None when it is no storage fault (a bug, a corrupt file: raised as it is)."""
    if isinstance(e, OSError):
        if e.errno in _FULL:
            return "disk full"
        if e.errno in _READONLY:
            return "not writable"
        if e.errno in (errno.ENOTDIR, errno.EEXIST, errno.ENOENT):
            return "cannot be created"
        return None
    if isinstance(e, sqlite3.OperationalError):
        name = getattr(e, "sqlite_errorname", "") or ""
        text = str(e)
        if name == "SQLITE_FULL" or "disk is full" in text:
            return "disk full"
        if name.startswith("SQLITE_READONLY") or "readonly" in text:
            return "not writable"
        if name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
            return "cannot be opened"
        if name.startswith("SQLITE_IOERR") or "disk I/O error" in text:
            return "disk I/O error"
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in text:
            return "locked"  # another process held it past the connection's timeout
    return None


def check_local(folder: Path) -> None:
    """Before work that needs the state folder: StateUnavailable when it is known to be down, or has less than
    LOCAL_MIN_FREE bytes free (one statvfs: what a stored Response costs before its upstream call)."""
    health = local_health(folder)
    if health.down:
        raise health.error()
    try:
        full = free_bytes(folder) < LOCAL_MIN_FREE
    except OSError:
        return  # not there yet: opening it says what is wrong
    if full:
        raise health.lost("disk full")


def local_failure(folder: Path, e: BaseException) -> StateUnavailable | None:
    """`e`, from writing the state folder, as the folder's outage (logged once), or None: not a storage fault."""
    fault = local_fault(e)
    return local_health(folder).lost(fault) if fault is not None else None
