"""qwen-code's credential file and lock file, byte-compatible (see docs/accounts.md).

File: `json.dumps(obj, indent=2)`, no trailing newline, mode 0600 (folder 0700), written to a temp file
`<name>.tmp.<uuid>`, fsynced and renamed over the old one, so a crash leaves the old file or the new one.
Lock: exclusive create of `<name>.lock` holding a random UUID; stale when its mtime is more than 10 s old
-> renamed to `<lock>.stale.<uuid>` and removed; 20 attempts from 100 ms, x1.5, capped at 2 s; removed in
`finally` (and at exit). A lock's content is never interpreted (old qwen-code versions wrote JSON there):
it is only compared with our own UUID before we remove a lock, so we never remove someone else's.

Everything here is blocking file I/O: async callers run it with `asyncio.to_thread`.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
import uuid
from pathlib import Path

REQUIRED = ("access_token", "refresh_token", "token_type")
# Key orders qwen-code writes: after a device login, and after a refresh.
LOGIN_ORDER = ("access_token", "refresh_token", "token_type", "resource_url", "expiry_date")
REFRESH_ORDER = ("access_token", "token_type", "refresh_token", "resource_url", "expiry_date")
LOCK_STALE_S = 10.0  # LOCK_TIMEOUT_MS
LOCK_ATTEMPTS = 20
LOCK_FIRST_DELAY_S = 0.1
LOCK_MAX_DELAY_S = 2.0
REFRESH_BUFFER_MS = 30_000  # TOKEN_REFRESH_BUFFER_MS


class CredentialFileError(Exception):
    """The file exists but is not a valid Qwen Code login (the message names the file, never its content)."""


def read_creds(path: Path) -> dict | None:
    """The login in `path`, or None when the file is absent. Raises CredentialFileError when it is not a
    valid login by qwen-code's rule (three strings and a numeric expiry_date)."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CredentialFileError(f"{path.name} is unreadable ({type(e).__name__})") from e
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise CredentialFileError(f"{path.name} is not valid JSON") from e
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in REQUIRED):
        raise CredentialFileError(f"{path.name} is not a valid Qwen Code login")
    expiry = data.get("expiry_date")
    if not isinstance(expiry, (int, float)) or isinstance(expiry, bool):
        raise CredentialFileError(f"{path.name} has no numeric expiry_date")
    return data


def is_fresh(creds: dict, now_ms: float | None = None) -> bool:
    """qwen-code's isTokenValid: usable while now < expiry_date - 30 s."""
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    return now_ms < creds["expiry_date"] - REFRESH_BUFFER_MS


def dump_creds(creds: dict, order: tuple[str, ...] = REFRESH_ORDER) -> str:
    """The exact bytes qwen-code writes: JSON.stringify(creds, null, 2), undefined (None) dropped."""
    ordered = {k: creds[k] for k in order if creds.get(k) is not None}
    ordered.update({k: v for k, v in creds.items() if k not in ordered and v is not None})
    return json.dumps(ordered, indent=2, ensure_ascii=False)


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600 via temp file + fsync + os.replace (folder created 0700)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f"{path.name}.tmp.{uuid.uuid4()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)  # forceMode: whatever the umask
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def write_creds(path: Path, creds: dict, order: tuple[str, ...] = REFRESH_ORDER) -> None:
    """Atomic 0600 write in qwen-code's format; a crash leaves the old file or the new one, never half."""
    atomic_write(path, dump_creds(creds, order))


_held: set["FileLock"] = set()
_held_lock = threading.Lock()


@atexit.register
def _release_all() -> None:  # qwen-code also removes its lock on exit
    for lock in list(_held):
        lock.release()


class LockTimeout(TimeoutError):
    pass


class FileLock:
    """qwen-code's cross-process refresh lock. Blocking: call from a thread."""

    def __init__(self, path: Path, stale_after: float = LOCK_STALE_S, attempts: int = LOCK_ATTEMPTS,
                 first_delay: float = LOCK_FIRST_DELAY_S, max_delay: float = LOCK_MAX_DELAY_S) -> None:
        self.path = path
        self.stale_after = stale_after
        self.attempts = attempts
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._ident: tuple[int, int] | None = None  # (st_dev, st_ino) of the lock file we created
        self._token = ""

    @property
    def held(self) -> bool:
        return self._ident is not None

    def acquire(self) -> None:
        delay = self.first_delay
        for attempt in range(self.attempts):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                if self._break_if_stale():
                    continue  # as qwen-code: try again at once
                if attempt == self.attempts - 1:
                    break  # no wait after the last attempt: it would only delay the timeout
                time.sleep(delay)
                delay = min(delay * 1.5, self.max_delay)
                continue
            token = str(uuid.uuid4())
            try:
                os.write(fd, token.encode())
                st = os.fstat(fd)
            finally:
                os.close(fd)
            self._ident = (st.st_dev, st.st_ino)
            self._token = token
            with _held_lock:
                _held.add(self)
            return
        raise LockTimeout("Failed to acquire file lock for token refresh: timeout exceeded")

    def _break_if_stale(self) -> bool:
        try:
            if time.time() - self.path.stat().st_mtime <= self.stale_after:
                return False
            stale = self.path.with_name(f"{self.path.name}.stale.{uuid.uuid4()}")
            os.rename(self.path, stale)
            stale.unlink(missing_ok=True)
            return True
        except FileNotFoundError:
            return True  # gone meanwhile: try again at once
        except OSError:
            return False

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
        if not self.held:
            return
        # If another process broke our lock as stale and took it, the file is theirs now: leave it.
        if self._still_ours():
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        self._ident = None
        with _held_lock:
            _held.discard(self)

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
