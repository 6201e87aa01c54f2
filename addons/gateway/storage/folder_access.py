"""Whether the user the gateway runs as can read its state folder, said in one line with the command that fixes it.

A folder made by another user (a volume created by root, a container run with another uid) or a file restored
as root (`keys.sqlite3` 0600) stopped the start with a PermissionError or SQLite's "unable to open database file"
and a traceback, which names neither the user nor what to do. Read before anything else opens the folder: the
folder, every folder in it and every file in it must be readable (and the folders enterable) by this user. What
it may not write is the folder's outage, with its own handling (storage/health.py): a read-only folder starts.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

MAX_ENTRIES = 10_000  # the walk is bounded: a state folder holds a few dozen files


def unreadable(folder: Path) -> str | None:
    """None when this user can read all of `folder` (or it does not exist yet); otherwise the line that says
    which path it cannot read, as whom, and how to fix it."""
    blocked = _first_unreadable(folder)
    if blocked is None:
        return None
    user, owner = _name(os.geteuid()), _owner(blocked)
    what = "open the folder" if blocked.is_dir() else "read"
    return (f"it runs as user {user} (uid {os.geteuid()}), which cannot {what} {blocked} ({owner}). "
            f"Give the state folder to that user: sudo chown -R {user} {folder} — or run the gateway as the "
            "user who owns it")


def _first_unreadable(folder: Path) -> Path | None:
    if not os.path.lexists(folder):
        return None
    if not os.access(folder, os.R_OK | os.X_OK):
        return folder
    pending, seen = [folder], 0
    while pending:
        current = pending.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            return current
        for entry in entries:
            seen += 1
            if seen > MAX_ENTRIES:
                return None
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                return path
            if is_dir:
                if not os.access(path, os.R_OK | os.X_OK):
                    return path
                pending.append(path)
            elif entry.is_file(follow_symlinks=False) and not os.access(path, os.R_OK):
                return path
    return None


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a container's uid with no entry in /etc/passwd
        return str(uid)


def _owner(path: Path) -> str:
    try:
        st = os.lstat(path)
    except OSError:
        return "its owner unknown"
    return f"owned by {_name(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):04o}"
