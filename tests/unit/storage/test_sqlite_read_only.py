"""A state folder's SQLite file in a folder mounted read-only, for real (a read-only bind mount in a private mount
namespace: the tests run as root, for whom a folder's mode is no barrier), left as a gateway stopped or killed
leaves it: with its -wal and -shm beside it. SQLite opens such a file read-only without a word and keeps it so
once the folder takes writes again; `open_private_db` refuses it instead, as the folder's outage, so that a
store opens it anew later. Before (issue 50): the connection was opened, and a store that kept it (stored
Responses' writer) could not write again until a restart. The keys, which must be read there:
tests/unit/tenancy/test_store_read_only.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

_READ_ONLY = """set -e
mount --bind "$1" "$1"
mount -o remount,bind,ro "$1"
exec "$2" -c "$3" "$1"
"""

_CHECK = r"""
import subprocess, sys
from pathlib import Path
from qwen_gateway.storage.health import local_fault
from qwen_gateway.storage.sqlite import open_private_db

folder = Path(sys.argv[1])
try:
    open_private_db(folder / "x.sqlite3", timeout=1)
    print("opened")
except Exception as e:
    print(local_fault(e))
subprocess.run(["mount", "-o", "remount,bind,rw", str(folder)], check=True)
db = open_private_db(folder / "x.sqlite3", timeout=1)
db.execute("INSERT INTO t VALUES (2)")
print(db.execute("SELECT count(*) FROM t").fetchone()[0])
"""

_KILLED = """import os, sys
from pathlib import Path
from qwen_gateway.storage.sqlite import open_private_db
db = open_private_db(Path(sys.argv[1]) / "x.sqlite3", timeout=1, setup="CREATE TABLE t (v INTEGER);")
db.execute("INSERT INTO t VALUES (1)")
os._exit(0)
"""


def test_a_file_it_cannot_write_is_the_folders_outage_not_a_read_only_connection(tmp_path):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare (a read-only bind mount in a private mount namespace)")
    folder = tmp_path / "state"
    subprocess.run([sys.executable, "-c", _KILLED, str(folder)], check=True, timeout=60)
    assert sorted(p.name for p in folder.iterdir()) == ["x.sqlite3", "x.sqlite3-shm", "x.sqlite3-wal"]
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "--", "sh", "-c", _READ_ONLY, "sh",
                        str(folder), sys.executable, _CHECK], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ["not", "writable", "2"]  # refused read-only; opened and written once writable
