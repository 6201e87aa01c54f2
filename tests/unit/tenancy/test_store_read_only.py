"""The keys file in a state folder that cannot be written (tenancy/store.py, storage/sqlite.py `read_only_copy`),
for real: a read-only bind mount of the folder in a private mount namespace (the tests run as root, for whom a
folder's mode is no barrier), with the file as `qwen-keys` leaves it (closed cleanly: no -wal) and as a process
killed after a revocation leaves it (the revocation only in its -wal, with and without the -shm beside it). The
keys are read as last committed — the revoked key revoked —, nothing is written, every write fails as the
folder's outage, and once the folder is writable the file is opened as usual and the spend written. Before
(issue 50): "unable to open database file" at `PRAGMA journal_mode=WAL`, and a gateway with named keys did not
start. Through a real gateway: tests/e2e/test_e2e_state_faults.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qwen_gateway.tenancy.ring import digest
from qwen_gateway.tenancy.store import FILENAME, KeyStore

# the folder bound over itself read-only in this process's own mount namespace, then the check
_READ_ONLY = """set -e
mount --bind "$1" "$1"
mount -o remount,bind,ro "$1"
exec "$2" -c "$3" "$1"
"""

_CHECK = r"""
import json, os, subprocess, sys
from pathlib import Path
from qwen_gateway.tenancy.shared_copy import KeyCopy
from qwen_gateway.tenancy.store import FILENAME, Delta, KeyStore
from qwen_gateway.storage.health import local_fault

folder = Path(sys.argv[1])
files = lambda: sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir())
before = files()
out = {}
store = KeyStore.local(folder)
out["a copy"] = store.copy_of is not None
out["keys"] = {r.name: r.revoked for r in store.keys()}
out["a copy of the shared keys reads"] = sorted(r.name for r in KeyCopy(folder / FILENAME).read() or ())
version = store.data_version()
spend = {("alice", "2026-01-02"): Delta(requests=1, tokens=7)}
for what, write in (("spend", lambda: store.write_spend(spend)), ("add", lambda: store.add("bob", b"b" * 32, {})),
                    ("revoke", lambda: store.update("alice", revoked=1.0))):
    try:
        write()
        out[what] = "written"
    except Exception as e:
        out[what] = local_fault(e)
out["nothing written"] = files() == before
out["the same data version"] = store.data_version() == version
subprocess.run(["mount", "-o", "remount,bind,rw", str(folder)], check=True)
out["a new data version once writable"] = store.data_version() != version and store.copy_of is None
store.write_spend(spend)
out["spent"] = store.spend(today="2026-01-02")["alice"].tokens_today
out["keys after"] = {r.name: r.revoked for r in store.keys()}
store.close()
print(json.dumps(out))
"""


def _problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root (a read-only bind mount in a private mount namespace)"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) not installed"
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True, timeout=20)
    return None if r.returncode == 0 else f"no private mount namespace here: {r.stderr.decode().strip()}"


def _keys(folder: Path) -> None:
    """alice active and ci, closed cleanly (as qwen-keys leaves them)."""
    store = KeyStore.local(folder)
    try:
        store.add("alice", digest(b"alice"), {})
        store.add("ci", digest(b"ci"), {})
    finally:
        store.close()


_KILLED = """import os, sys, time
from pathlib import Path
from qwen_gateway.tenancy.store import KeyStore
store = KeyStore.local(Path(sys.argv[1]))
store.conn.execute("PRAGMA wal_autocheckpoint=0")
store.update("ci", revoked=time.time())
os._exit(0)
"""


def _revoke(folder: Path, how: str) -> None:
    if how == "cleanly":
        store = KeyStore.local(folder)
        try:
            store.update("ci", revoked=time.time())
        finally:
            store.close()
        assert not Path(f"{folder / FILENAME}-wal").exists()
        return
    subprocess.run([sys.executable, "-c", _KILLED, str(folder)], check=True, timeout=60)  # killed: no close
    assert Path(f"{folder / FILENAME}-wal").stat().st_size > 0
    if how == "by a process killed, its -shm lost":  # a copy or a restore of the folder without it
        Path(f"{folder / FILENAME}-shm").unlink()


@pytest.mark.parametrize("how", ["cleanly", "by a process killed", "by a process killed, its -shm lost"])
def test_a_read_only_folder_reads_its_keys_as_committed_and_writes_nothing_until_it_is_writable(tmp_path, how):
    if reason := _problem():
        pytest.skip(reason)
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    _keys(folder)
    _revoke(folder, how)
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "--", "sh", "-c", _READ_ONLY, "sh",
                        str(folder), sys.executable, _CHECK], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout) == {
        "a copy": True,
        "keys": {"alice": False, "ci": True},  # the revocation kept, from the -wal when that is where it is
        "a copy of the shared keys reads": ["alice", "ci"],
        "spend": "not writable", "add": "not writable", "revoke": "not writable",  # the folder's outage
        "nothing written": True,
        "the same data version": True,
        "a new data version once writable": True,  # the gateway reads the keys again (what changed meanwhile)
        "spent": 7,
        "keys after": {"alice": False, "ci": True},
    }


def test_a_writable_folder_opens_the_file_itself(tmp_path):
    _keys(tmp_path)
    store = KeyStore.local(tmp_path)
    try:
        assert store.copy_of is None and store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()
