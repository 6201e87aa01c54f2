"""Output caps Qwen named in its refusals ("Range of max_tokens should be [1, N]"), per model, kept in the state
folder so that a restarted gateway does not pay the refusal again. A request reads the dict in memory; only
learning writes (once per model and cap). A folder that cannot take the file (read-only, full: storage/health.py)
keeps the caps in memory alone."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

from ..storage.health import local_failure
from ..storage.sqlite import open_private_db

log = logging.getLogger("qwen")

FILE = "learned_caps.sqlite3"
_SCHEMA = "CREATE TABLE IF NOT EXISTS caps (model TEXT PRIMARY KEY, cap INTEGER NOT NULL, learned REAL);"


class LearnedCaps(dict[str, int]):
    """model -> the output cap Qwen named; `learn` also writes it to the folder's file."""

    def __init__(self, folder: Path | None = None) -> None:
        super().__init__()
        self.folder = folder
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if folder is not None:
            self._open(folder / FILE)

    def _open(self, path: Path) -> None:
        try:
            self._db = open_private_db(path, timeout=5, setup=_SCHEMA)
            self.update({m: int(c) for m, c in self._db.execute("SELECT model, cap FROM caps")})
        except (OSError, sqlite3.Error) as e:  # a read-only, full or broken file: caps last until a restart
            log.warning("qwen: learned output caps are kept in memory only: %s cannot be opened (%s)", path,
                        type(e).__name__)
            self._db = None

    def learn(self, model: str, cap: int, now: float) -> None:
        self[model] = cap
        if self._db is None:
            return
        with self._lock:
            try:
                self._db.execute("INSERT OR REPLACE INTO caps VALUES (?,?,?)", (model, cap, now))
            except Exception as e:
                if self.folder is None or local_failure(self.folder, e) is None:
                    raise

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
