"""Output caps Qwen named in its refusals ("Range of max_tokens should be [1, N]"), per model, kept in the state
folder so that a restarted gateway does not pay the refusal again. A request reads the dict in memory; only
learning writes (once per model and cap). A folder that cannot take the file (read-only, full: storage/health.py)
keeps the caps in memory alone."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from pathlib import Path

from ..storage.health import local_failure
from ..storage.sqlite import open_private_db, read_only_copy

log = logging.getLogger("qwen")

FILE = "learned_caps.sqlite3"
_SCHEMA = "CREATE TABLE IF NOT EXISTS caps (model TEXT PRIMARY KEY, cap INTEGER NOT NULL, learned REAL);"


class LearnedCaps(dict[str, int]):
    """model -> the output cap Qwen named; `learn` also writes it to the folder's file. The file is read when it
    exists and made at the first cap learned: configuring never makes a folder (a refused option's among them)."""

    def __init__(self, folder: Path | None = None) -> None:
        super().__init__()
        self.folder = folder
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._unwritable = False
        if folder is not None and (folder / FILE).is_file():
            self._load(folder / FILE)

    def _load(self, path: Path) -> None:
        try:
            with contextlib.closing(read_only_copy(path)) as db:  # read without writing beside the file
                self.update({m: int(c) for m, c in db.execute("SELECT model, cap FROM caps")})
        except (OSError, sqlite3.Error) as e:  # unreadable or broken: learned again from Qwen, once per model
            log.warning("qwen: learned output caps in %s cannot be read (%s)", path, type(e).__name__)

    def _open(self) -> sqlite3.Connection | None:
        if self._db is None and self.folder is not None and not self._unwritable:
            try:
                self._db = open_private_db(self.folder / FILE, timeout=5, setup=_SCHEMA)
            except (OSError, sqlite3.Error) as e:  # a read-only, full or broken folder: kept until a restart
                self._unwritable = True
                log.warning("qwen: learned output caps are kept in memory only: %s cannot be written (%s)",
                            self.folder / FILE, type(e).__name__)
        return self._db

    def learn(self, model: str, cap: int, now: float) -> None:
        self[model] = cap
        with self._lock:
            db = self._open()
            if db is None:
                return
            try:
                db.execute("INSERT OR REPLACE INTO caps VALUES (?,?,?)", (model, cap, now))
            except Exception as e:
                if self.folder is None or local_failure(self.folder, e) is None:
                    raise

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
