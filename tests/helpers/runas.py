"""A process run as another user (nobody), for tests of what a gateway that is not root cannot read.

The test process is root; the gateway is started by `setpriv` with nobody's uid and gid and no groups. Its
Python may live under a folder only root can enter (pyenv under /root, mode 0700): then the prefix runs it in a
private mount namespace (`unshare -m`) where that folder is a tmpfs others may enter, holding the Python's own
folder bind-mounted at its place — nothing else of it is visible, and nothing outside the namespace changes."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
from pathlib import Path

USER = "nobody"

# "$1": the folder others cannot enter, "$2": its child on the way to Python, "$3": a mount point for the child
# while the folder is covered; then the command, run as nobody
_COVER = """set -e
closed="$1"; child="$2"; spare="$3"; shift 3
mount --bind "$closed/$child" "$spare"
mount -t tmpfs -o size=1m,mode=0755 qwen-runas "$closed"
mkdir "$closed/$child"
mount --move "$spare" "$closed/$child"
exec "$@"
"""


def ids() -> tuple[int, int]:
    entry = pwd.getpwnam(USER)
    return entry.pw_uid, entry.pw_gid


def _closed_folders() -> list[Path]:
    """The folders on the way to this Python (and its installation) that others cannot enter."""
    closed = []
    for target in {Path(os.path.realpath(sys.executable)), Path(os.path.realpath(sys.base_prefix))}:
        for folder in reversed(target.parents):
            if folder != Path("/") and not os.stat(folder).st_mode & stat.S_IXOTH and folder not in closed:
                closed.append(folder)
    return closed


def _closed_checkout() -> Path | None:
    """The first folder on the way to this checkout (or the checkout itself) that others cannot enter: the gateway's
    package is installed from it (editable), so nobody must reach it (a clone under `mktemp -d`, mode 0700, is not)."""
    checkout = Path(__file__).resolve().parents[2]
    for folder in [*reversed(checkout.parents), checkout]:
        if folder != Path("/") and not os.stat(folder).st_mode & stat.S_IXOTH:
            return folder
    return None


def problem() -> str | None:
    """Why a process cannot be run as nobody here (None: it can)."""
    if os.geteuid() != 0:
        return "needs root (to run a process as another user)"
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is not installed"
    try:
        ids()
    except KeyError:
        return f"no user {USER} on this machine"
    if (shut := _closed_checkout()) is not None:
        return f"{shut} is closed to other users: a gateway run as {USER} imports the package from this checkout"
    closed = _closed_folders()
    if len(closed) > 1:
        return f"Python's folders {', '.join(map(str, closed))} are closed to other users"
    if closed and shutil.which("unshare") is None:
        return f"{closed[0]} is closed to other users and unshare (util-linux) is not installed"
    return None


def prefix(spare: Path) -> tuple[str, ...]:
    """What runs a command as nobody (`spare`: an empty folder of the test's, used while a closed folder is covered)."""
    uid, gid = ids()
    as_user = ("setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--")
    closed = _closed_folders()
    if not closed:
        return as_user
    folder = closed[0]
    child = next(p for p in Path(os.path.realpath(sys.executable)).parents if p.parent == folder).name
    spare.mkdir(parents=True, exist_ok=True)
    return ("unshare", "-m", "--propagation", "private", "--", "sh", "-c", _COVER, "sh", str(folder), child,
            str(spare), *as_user)


def open_folder(prefix_name: str) -> Path:
    """A folder under /tmp that nobody may enter (pytest's own is root's alone), removed by `remove`."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix=prefix_name))
    folder.chmod(0o755)
    return folder


def give(path: Path) -> None:
    """`path` and everything in it owned by nobody."""
    uid, gid = ids()
    subprocess.run(["chown", "-R", f"{uid}:{gid}", str(path)], check=True, timeout=30)


def remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
