"""qwen-code's lock file, byte-compatible (see docs/accounts.md), with the gateways' OS lock beside it.

Lock: exclusive create of `<name>.lock` holding a random UUID; stale when its mtime is more than 10 s old
-> renamed to `<lock>.stale.<uuid>` and removed; 20 attempts from 100 ms, x1.5, capped at 2 s; removed in
`finally` (and at exit). A lock's content is never interpreted (old qwen-code versions wrote JSON there):
it is only compared with UUIDs we wrote, so we never remove someone else's live lock.

What the gateway adds, for a holder killed with its lock (SIGKILL runs no `finally`): while it holds the lock
file it also holds an OS lock (`flock`, released by the kernel when the process dies) on `<lock>.gateway`,
where it writes the UUID it puts in the lock file. A gateway (or `qwen-auth`) that gets that OS lock knows
no other one holds the lock file; if the lock file holds the UUID the previous holder wrote there, that holder
is dead: the lock is removed at once, said in one log line. qwen-code takes no OS lock, so its lock file keeps
qwen-code's rule (stale after 10 s), and a wait for it is said in one line. `<lock>.gateway` is removed on
release; a killed holder's stays (a UUID, no secret) until the next holder.

Blocking file I/O: async callers run it with `asyncio.to_thread`.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import uuid
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on Windows: the lock file alone then
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("qwen")

LOCK_STALE_S = 10.0  # LOCK_TIMEOUT_MS
LOCK_ATTEMPTS = 20
LOCK_FIRST_DELAY_S = 0.1
LOCK_MAX_DELAY_S = 2.0

_held: set["FileLock"] = set()
_held_lock = threading.Lock()


@atexit.register
def _release_all() -> None:  # qwen-code also removes its lock on exit
    for lock in list(_held):
        lock.release()


class LockTimeout(TimeoutError):
    pass


class FileLock:
    """qwen-code's cross-process refresh lock, with the gateways' OS lock beside it. Blocking: call from a
    thread."""

    def __init__(self, path: Path, stale_after: float = LOCK_STALE_S, attempts: int = LOCK_ATTEMPTS,
                 first_delay: float = LOCK_FIRST_DELAY_S, max_delay: float = LOCK_MAX_DELAY_S) -> None:
        self.path = path
        self.owner_path = path.with_name(path.name + ".gateway")
        self.stale_after = stale_after
        self.attempts = attempts
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._ident: tuple[int, int] | None = None  # (st_dev, st_ino) of the lock file we created
        self._token = ""
        self._os_fd: int | None = None  # the OS lock's file, held (-1: no OS lock to be had here)
        self._previous = b""  # the UUID the last holder of the OS lock wrote

    @property
    def held(self) -> bool:
        return self._ident is not None

    def acquire(self) -> None:
        try:
            self._acquire()
        except BaseException:
            self._drop_os_lock()  # never left holding the OS lock without the lock file
            raise

    def _acquire(self) -> None:
        delay = self.first_delay
        self._token = str(uuid.uuid4())
        said = False
        for attempt in range(self.attempts):
            if self._os_fd is not None or self._take_os_lock():
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
                except FileExistsError:
                    if self._break_if_dead() or self._break_if_stale():
                        continue  # as qwen-code: try again at once
                    if not said:  # a holder we cannot know to be dead (qwen-code): say it, once
                        said = True
                        log.info("qwen: %s is held by another program (qwen-code?): waiting for it; a lock "
                                 "unchanged for %g s is broken as stale", self.path.name, self.stale_after)
                else:
                    try:
                        os.write(fd, self._token.encode())
                        st = os.fstat(fd)
                    finally:
                        os.close(fd)
                    self._ident = (st.st_dev, st.st_ino)
                    with _held_lock:
                        _held.add(self)
                    return
            # else another gateway (or qwen-auth) of this machine holds it: it is alive
            if attempt == self.attempts - 1:
                break  # no wait after the last attempt: it would only delay the timeout
            time.sleep(delay)
            delay = min(delay * 1.5, self.max_delay)
        raise LockTimeout("Failed to acquire file lock for token refresh: timeout exceeded")

    def _take_os_lock(self) -> bool:
        """Take the gateways' OS lock without waiting; False while a live process holds it. Where there is
        none to be had (no flock, a folder we cannot write), the lock file alone decides."""
        if fcntl is None:
            self._os_fd = -1
            return True
        for _ in range(3):  # its holder may remove the file between our open and our lock: take the new one
            try:
                fd = os.open(self.owner_path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                self._os_fd = -1
                return True
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except OSError:  # a file system without flock
                os.close(fd)
                self._os_fd = -1
                return True
            if self._same_file(fd):
                self._previous = os.pread(fd, 64, 0)
                os.ftruncate(fd, 0)
                os.pwrite(fd, self._token.encode(), 0)
                self._os_fd = fd
                return True
            os.close(fd)
        return False

    def _same_file(self, fd: int) -> bool:
        try:
            a, b = os.fstat(fd), os.stat(self.owner_path)
        except OSError:
            return False
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

    def _drop_os_lock(self) -> None:
        fd, self._os_fd = self._os_fd, None
        if fd is None or fd < 0:
            return
        try:
            if self._same_file(fd):
                os.unlink(self.owner_path)  # ~/.qwen as it was; whoever waits on the old file looks again
        except OSError:
            pass
        finally:
            os.close(fd)  # the OS lock goes with it

    def _break_if_dead(self) -> bool:
        """Holding the OS lock, a lock file with the UUID the previous holder wrote is that dead holder's."""
        if not self._previous or self._os_fd is None or self._os_fd < 0:
            return False
        try:
            with open(self.path, "rb") as f:
                if f.read(64) != self._previous:
                    return False
        except FileNotFoundError:
            return True
        except OSError:
            return False
        self._previous = b""
        if self._remove_lock():
            log.info("qwen: %s was left by a process that ended while holding it: removed", self.path.name)
        return True

    def _break_if_stale(self) -> bool:
        try:
            if time.time() - self.path.stat().st_mtime <= self.stale_after:
                return False
        except FileNotFoundError:
            return True  # gone meanwhile: try again at once
        except OSError:
            return False
        if self._remove_lock():
            log.warning("qwen: %s was unchanged for more than %g s: broken as stale (its holder is gone)",
                        self.path.name, self.stale_after)
        return True

    def _remove_lock(self) -> bool:
        """qwen-code's way: rename to `<lock>.stale.<uuid>`, then remove; False when it was gone already."""
        stale = self.path.with_name(f"{self.path.name}.stale.{uuid.uuid4()}")
        try:
            os.rename(self.path, stale)
        except OSError:
            return False
        stale.unlink(missing_ok=True)
        return True

    def _still_ours(self) -> bool:
        """Same file and still our UUID (inode numbers are reused at once after a stale break)."""
        try:
            st = self.path.stat()
            if (st.st_dev, st.st_ino) != self._ident:
                return False
            with open(self.path, "rb") as f:
                return f.read(64) == self._token.encode()
        except OSError:
            return False

    def touch(self) -> None:
        """Keep a held lock from looking stale while a slow refresh is still running."""
        if self.held and self._still_ours():
            try:
                os.utime(self.path)
            except OSError:
                pass

    def release(self) -> None:
        if self.held:
            # If qwen-code broke our lock as stale and took it, the file is theirs now: leave it.
            if self._still_ours():
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
            self._ident = None
            with _held_lock:
                _held.discard(self)
        self._drop_os_lock()

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
