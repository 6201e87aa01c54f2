"""Two admins at once: the `qwen-keys` commands that change one key take turns, and a command whose key another one
changed while it waited changes nothing and says so — so every key a command prints works when it returns, and the
end state is one an admin asked for (before: two `rotate`s of one key both exited 0 and one printed key never
worked; `revoke` beside `rotate` could leave the name active).

- Shared database: a transaction-scoped advisory lock per key name (`qwen-key:<name>:command`), on a connection of
  its own whose transaction stays open from before the change until the command returns (its confirmation by every
  running gateway included): it holds through PgBouncer in transaction mode, and ends with the command's session
  should the command die.
- State folder: an OS lock (`flock`) on `<state_dir>/keys.lock`, the folder's one lock file for key changes (the
  kernel releases it when the command dies).

A command reads its key's version (digest, revocation, last change) before it waits for the turn, and again once it
has it: if another command changed the key in between, this one is refused (`Conflict`), nothing changed."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LOCK_FILE = "keys.lock"
# How much longer than its own --wait a command waits for its turn: the command before it holds the turn for its
# change (a moment) and for its --wait (10 s) at most, and its process needs a moment to start and end.
TURN_EXTRA_S = 10.0
POLL_S = 0.05  # off the main thread: how often the folder's lock is tried again
LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"


class Conflict(Exception):
    """Another command changed the key while this one waited, or held it past the wait: nothing changed here."""


def lock_name(name: str) -> str:
    return f"qwen-key:{name}:command"


@contextlib.contextmanager
def turn(state_dir: Path, db: Any, name: str, bound: float) -> Iterator[None]:
    """This command's turn on key `name` (`db`: the shared Database, or None for the state folder), waited for
    `bound` seconds at most (then `Conflict`)."""
    if db is not None:
        with _pg_turn(db, name, bound):
            yield
    else:
        with _folder_turn(state_dir, bound):
            yield


@contextlib.contextmanager
def _pg_turn(db: Any, name: str, bound: float) -> Iterator[None]:
    conn = db.connect()
    try:
        conn.execute("BEGIN")
        conn.execute(f"SET LOCAL lock_timeout = {int(bound * 1000)}")
        conn.execute("SET LOCAL idle_in_transaction_session_timeout = 0")  # held while every gateway confirms
        try:
            conn.execute(LOCK_SQL, (lock_name(name),))
        except Exception as e:
            if getattr(e, "sqlstate", "") == "55P03":  # lock_not_available: the lock_timeout above
                raise Conflict(f"another qwen-keys command has been changing key {name!r} for more than {bound:g} s"
                               ) from None
            raise
        yield
    finally:
        with contextlib.suppress(Exception):
            conn.execute("COMMIT")
        conn.close()


@contextlib.contextmanager
def _folder_turn(state_dir: Path, bound: float) -> Iterator[None]:
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:  # a folder that cannot be written: no change can be made there either (the change says why)
        yield
        return
    try:
        if threading.current_thread() is threading.main_thread():
            _flock_alarmed(fd, state_dir, bound)
        else:  # the admin API's request threads: no signal there, the lock tried until the bound
            _flock_polled(fd, state_dir, bound)
        yield
    finally:
        os.close(fd)  # the lock with it


def _late(state_dir: Path, bound: float) -> Conflict:
    return Conflict(f"another qwen-keys command has held {state_dir / LOCK_FILE} for more than {bound:g} s")


def _flock_alarmed(fd: int, state_dir: Path, bound: float) -> None:
    def late(signum: int, frame: object) -> None:
        raise TimeoutError

    before = signal.signal(signal.SIGALRM, late)  # a blocking flock, ended by the alarm: waiters show in /proc/locks
    signal.setitimer(signal.ITIMER_REAL, bound)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except TimeoutError:
        raise _late(state_dir, bound) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)


def _flock_polled(fd: int, state_dir: Path, bound: float) -> None:
    deadline = time.monotonic() + bound
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise _late(state_dir, bound) from None
            time.sleep(POLL_S)
