"""qwen-code's credential file and lock file, byte-compatible (see docs/accounts.md).

File: `json.dumps(obj, indent=2)`, no trailing newline, mode 0600, written to a temp file and renamed.
Lock: exclusive create of `<name>.lock` holding a random UUID; stale after 10 s (mtime) -> renamed
away and removed; 20 attempts from 100 ms, x1.5, capped at 2 s. Never parse a lock's content.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

REQUIRED = ("access_token", "refresh_token", "token_type")
# Key orders qwen-code writes: after a device login, and after a refresh.
LOGIN_ORDER = ("access_token", "refresh_token", "token_type", "resource_url", "expiry_date")
REFRESH_ORDER = ("access_token", "token_type", "refresh_token", "resource_url", "expiry_date")
LOCK_STALE_S = 10.0
REFRESH_BUFFER_MS = 30_000


class CredentialFileError(Exception):
    pass


def read_creds(path: Path) -> dict | None:
    """The login in `path`, or None when the file is absent or not a valid login (qwen-code's rule)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise CredentialFileError(f"{path.name} is unreadable ({type(e).__name__})") from e
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in REQUIRED):
        raise CredentialFileError(f"{path.name} is not a valid Qwen Code login")
    if not isinstance(data.get("expiry_date"), (int, float)) or isinstance(data.get("expiry_date"), bool):
        raise CredentialFileError(f"{path.name} has no numeric expiry_date")
    return data


def is_fresh(creds: dict, now_ms: float | None = None) -> bool:
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    return now_ms < creds["expiry_date"] - REFRESH_BUFFER_MS


def write_creds(path: Path, creds: dict, order: tuple[str, ...] = REFRESH_ORDER) -> None:
    """Atomic 0600 write in qwen-code's format; a crash leaves the old file or the new one, never half."""
    ordered = {k: creds[k] for k in order if creds.get(k) is not None}
    ordered.update({k: v for k, v in creds.items() if k not in ordered and v is not None})
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f"{path.name}.tmp.{uuid.uuid4()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(ordered, indent=2, ensure_ascii=False))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class FileLock:
    """qwen-code's cross-process refresh lock. Blocking: call from a thread."""

    def __init__(self, path: Path, stale_after: float = LOCK_STALE_S, attempts: int = 20) -> None:
        self.path = path
        self.stale_after = stale_after
        self.attempts = attempts
        self.held = False

    def acquire(self) -> None:
        delay = 0.1
        for _ in range(self.attempts):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                self._break_if_stale()
                time.sleep(delay)
                delay = min(delay * 1.5, 2.0)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(uuid.uuid4()))
            self.held = True
            return
        raise TimeoutError("Failed to acquire file lock for token refresh: timeout exceeded")

    def _break_if_stale(self) -> None:
        try:
            if time.time() - self.path.stat().st_mtime > self.stale_after:
                stale = self.path.with_name(f"{self.path.name}.stale.{uuid.uuid4()}")
                os.rename(self.path, stale)
                stale.unlink(missing_ok=True)
        except FileNotFoundError:
            pass

    def release(self) -> None:
        if self.held:
            self.held = False
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
