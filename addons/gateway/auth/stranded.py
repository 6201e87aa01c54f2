"""A login a refresh left in its temp file: a process killed between writing `<file>.tmp.<uuid>` and renaming it
over `<file>` (credfile.atomic_write; qwen-code's atomicWriteFile does the same) leaves the server's new tokens
only there, and the server has already used up (rotated) the refresh token the login file holds. `recover`
finishes that rename for the one temp file that is surely this login's newer state, and removes superseded
copies. For an OAuth login (`OAUTH_LOGIN`) and a web session (web_session.STRANDED) alike.

Run it under the account's refresh lock (no writer of ours or qwen-code's refresh is then between its write
and its rename). A temp file is adopted only when it is valid (qwen-code's rule for a login), ours (same
owner, 0600, a regular file), of the same account (an OAuth login: same `resource_url` and `token_type`; a
web session: the same user), newer (a later expiry) and written no earlier than the login file was last
written (nobody rewrote the login since). What cannot be vouched for (not valid, half written, someone
else's, no login file to compare with) is left as it is and named in the log; the login file itself is only
ever replaced by a rename, never deleted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .credfile import CredentialFileError, fsync_folder, read_creds

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class FileKind:
    """What a credential file holds: `read` (None when absent; ValueError or CredentialFileError when not
    valid), whether two of them are `same` account's, and its `expiry` (larger: newer)."""

    read: Callable[[Path], Any]
    same: Callable[[Any, Any], bool]
    expiry: Callable[[Any], float]


OAUTH_LOGIN = FileKind(read_creds,
                   lambda a, b: (a.get("resource_url"), a["token_type"]) == (b.get("resource_url"), b["token_type"]),
                   lambda c: float(c["expiry_date"]))


@dataclass
class Recovery:
    adopted: str | None = None  # the temp file now renamed over the login file
    removed: list[str] = field(default_factory=list)  # superseded copies of this login
    left: list[tuple[str, str]] = field(default_factory=list)  # (temp file, why it was not touched)

    def lines(self, account: str) -> list[str]:
        """What was done, one log line each (file names only: never a token)."""
        out = []
        if self.adopted:
            out.append(f"qwen: {account}: adopted the newer login left in {self.adopted} by a refresh that was cut "
                       "off before saving it")
        out += [f"qwen: {account}: removed {name}, an older copy of the login" for name in self.removed]
        out += [f"qwen: {account}: left {name} as it is: {why}" for name, why in self.left]
        return out


def temps(path: Path) -> list[Path]:
    """The temp files of `path` (`<name>.tmp.<uuid>`), in no particular order."""
    prefix = path.name + ".tmp."
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    return [path.parent / n for n in names if n.startswith(prefix) and _UUID.fullmatch(n[len(prefix):])]


def recover(path: Path, kind: FileKind = OAUTH_LOGIN) -> Recovery:
    found = temps(path)
    out = Recovery()
    if not found:
        return out
    try:
        current = kind.read(path)
        mtime = path.stat().st_mtime
    except (CredentialFileError, ValueError, OSError):
        current = None
    if current is None:
        out.left = [(t.name, f"no valid {path.name} to compare it with") for t in found]
        return out
    newer: list[tuple[float, Path]] = []
    for tmp in found:
        verdict = _judge(tmp, current, mtime, kind)
        if isinstance(verdict, float):
            newer.append((verdict, tmp))
        elif verdict == "older":
            out.removed.append(tmp.name)
        else:
            out.left.append((tmp.name, verdict))
    if newer:
        best = max(newer, key=lambda n: n[0])[1]
        os.replace(best, path)  # the rename the killed writer did not get to
        fsync_folder(path)
        out.adopted = best.name
        out.removed += [t.name for _, t in newer if t is not best]
    for name in out.removed:
        (path.parent / name).unlink(missing_ok=True)
    return out


def _judge(tmp: Path, current: Any, mtime: float, kind: FileKind) -> float | str:
    """A newer login's expiry (adopt), "older" (a superseded copy: remove), or why it is left alone."""
    try:
        st = tmp.lstat()
    except OSError:
        return "gone meanwhile"
    if not os.path.isfile(tmp) or os.path.islink(tmp):
        return "not a regular file"
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        return "not this user's private file (owner or mode)"
    try:
        creds = kind.read(tmp)
    except (CredentialFileError, ValueError, OSError):
        return "not valid (half written, or not ours)"
    if creds is None:
        return "gone meanwhile"
    if not kind.same(current, creds):
        return "another account's"
    if kind.expiry(creds) > kind.expiry(current) and st.st_mtime >= mtime:
        return kind.expiry(creds)
    return "older"
