"""qwen-code's credential file, byte-compatible (see docs/accounts.md); its lock file is filelock.py's.

File: `json.dumps(obj, indent=2)`, no trailing newline, mode 0600 (folder 0700), written to a temp file
`<name>.tmp.<uuid>`, fsynced and renamed over the old one, so a crash leaves the old file or the new one
(or, killed between the two, the new one in the temp file: stranded.py adopts it).

Everything here is blocking file I/O: async callers run it with `asyncio.to_thread`.
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
    fsync_folder(path)


def fsync_folder(path: Path) -> None:
    """Make a rename to `path` durable (best effort)."""
    try:
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
