"""Two admins at once (trust round 6, item 1): two real `qwen-keys` processes change one key at the same moment, on a
state folder and on a real PostgreSQL. Before, both `rotate`s exited 0 and one printed key never worked; `revoke`
beside `rotate` could leave the name active while both said done. Now the commands on one key take turns
(cli/keys_lock.py): the one that finds the key changed by the other while it waited changes nothing and says so
(exit 1), and every key printed by a command that exited 0 works.

The two processes are lined up for real: the test holds the key's turn (the folder's lock file, the key's advisory
lock) while both start, and lets go once both wait for it (or, before the turns existed, once both had ended)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from helpers.team import QWEN_KEYS, ROOT, add_key, qwen_keys, until
from qwen_gateway.cli.keys_lock import LOCK_FILE, LOCK_SQL, lock_name

pytestmark = pytest.mark.e2e
ROUNDS = 3
SAID = next(ln.strip() for ln in (ROOT / "docs" / "keys.md").read_text().splitlines()
            if ln.strip().startswith("qwen-keys: another qwen-keys command changed key 'alice'"))


def _start(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([str(QWEN_KEYS), *args], env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _folder_waiters(lock: Path) -> int:
    """Processes blocked on `lock`'s flock (/proc/locks lists each waiter with `->`)."""
    inode = f":{lock.stat().st_ino} "
    return sum(1 for line in Path("/proc/locks").read_text().splitlines() if "->" in line and inode in line)


class Folder:
    def __init__(self, tmp_path: Path) -> None:
        self.state = tmp_path / "state"
        self.state.mkdir(mode=0o700)
        self.env = {"QWEN_GATEWAY_HOME": str(self.state), "QWEN_STATE_URL": "", "HOME": str(tmp_path)}

    @contextlib.contextmanager
    def gate(self) -> Iterator[Callable[[], int]]:
        lock = self.state / LOCK_FILE
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield lambda: _folder_waiters(lock)
        finally:
            os.close(fd)

    def record(self, name: str) -> tuple[str, bool]:
        with contextlib.closing(sqlite3.connect(self.state / "keys.sqlite3")) as db:
            digest, revoked = db.execute("SELECT digest, revoked FROM client_keys WHERE name = ?", (name,)).fetchone()
        return digest, revoked is not None


class Database:
    def __init__(self, tmp_path: Path, url: str) -> None:
        self.url = url
        self.env = {"QWEN_STATE_URL": url, "QWEN_GATEWAY_HOME": str(tmp_path / "cli"), "HOME": str(tmp_path)}

    @contextlib.contextmanager
    def gate(self) -> Iterator[Callable[[], int]]:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn, psycopg.connect(self.url, autocommit=True) as look:
            conn.execute("BEGIN")
            conn.execute(LOCK_SQL, (lock_name("alice"),))
            yield lambda: look.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                                       "AND database = (SELECT oid FROM pg_database WHERE datname = "
                                       "current_database())").fetchone()[0]
            conn.execute("COMMIT")

    def record(self, name: str) -> tuple[str, bool]:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            digest, revoked = conn.execute("SELECT digest, revoked FROM client_keys WHERE name = %s",
                                           (name,)).fetchone()
        return digest, revoked is not None


@pytest.fixture(params=["folder", "postgresql"])
def place(request, tmp_path):
    if request.param == "folder":
        return Folder(tmp_path)
    return Database(tmp_path, request.getfixturevalue("pg_url"))


def _at_once(place, first: tuple[str, ...], second: tuple[str, ...]) -> list[subprocess.CompletedProcess]:
    """Both commands started while the test holds the key's turn; let go once both wait (or both ended)."""
    with place.gate() as waiting:
        procs = [_start(place.env, *first), _start(place.env, *second)]
        until(lambda: waiting() >= 2 or all(p.poll() is not None for p in procs), "both commands at the key's turn",
              limit=30)
    done = []
    for p, args in zip(procs, (first, second)):
        out, err = p.communicate(timeout=60)
        done.append(subprocess.CompletedProcess(args, p.returncode, out, err))
    return done


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.mark.parametrize("other", ["rotate", "revoke"])
def test_two_admins_changing_one_key_at_once_take_turns_and_every_printed_key_works(place, other):
    add_key(place.env, "alice")
    for _ in range(ROUNDS):
        before, _revoked = place.record("alice")
        done = _at_once(place, ("rotate", "alice"), (other, "alice"))
        won = [r for r in done if r.returncode == 0]
        lost = [r for r in done if r.returncode != 0]
        said = [(r.args, r.returncode, r.stdout[-300:], r.stderr[-300:]) for r in done]
        assert len(won) == 1 and len(lost) == 1, said  # before: both exited 0
        assert lost[0].returncode == 1 and lost[0].stderr.strip() == SAID, said  # as docs/keys.md prints it
        assert "sk-qg-" not in lost[0].stdout + lost[0].stderr, said  # no key printed by the command that lost
        digest, revoked = place.record("alice")
        if won[0].args[0] == "rotate":  # the key it printed is the key, active
            printed = won[0].stdout.strip().splitlines()[-1]
            assert printed.startswith("sk-qg-") and digest == _sha(printed) and not revoked, said
        else:  # revoked, and not rotated
            assert revoked and digest == before, said
            qwen_keys(place.env, "rotate", "alice")  # active again for the next round
