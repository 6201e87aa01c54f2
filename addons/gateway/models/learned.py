"""What Qwen's own refusals taught the gateway about a model (upstream/dashscope/ranges.py reads them): claims,
not truths. Each is

- bounded: a value below the smallest any catalogue model has (`FLOORS`) is never learned;
- dated: it holds `TTL_S` after it was learned, then the client's value goes up again and Qwen is asked anew;
- kept: in the state folder (learned.sqlite3; shared on PostgreSQL: learned_pg.py), read on every start, a row
  that is not a valid fact skipped with one line;
- visible and removable: `/health`, `qwen-usage learned`, the flow of every request it changed, and
  `qwen-usage learned --forget MODEL` (a running gateway reads the folder's file again within `RELOAD_S`).

What a 400 taught of a model's thinking (thinking-only, effort-native) and that it answers streams only is kept
in memory (`thinking`, `stream_only`): cheap to learn again after a restart. A request reads the dicts in memory;
only learning and forgetting write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from .catalogue import CHAT, ROWS, Thinking
from ..storage.health import local_failure
from ..storage.sqlite import open_private_db, read_only_copy

log = logging.getLogger("qwen")

FILE = "learned.sqlite3"
OLD_FILE = "learned_caps.sqlite3"  # output caps only (before facts were dated and bounded): read once, renamed
_SCHEMA = ("CREATE TABLE IF NOT EXISTS facts (model TEXT NOT NULL, fact TEXT NOT NULL, value INTEGER NOT NULL, "
           "learned REAL NOT NULL, PRIMARY KEY (model, fact));")
OUTPUT, BUDGET, INPUT = "output", "budget", "input"
FACTS = (OUTPUT, BUDGET, INPUT)
TTL_S = 86400.0  # a learned fact holds a day, then Qwen is asked again
RELOAD_S = 30.0


def _floor(values: Iterable[int | None]) -> int:
    return min(v for v in values if v)


# The smallest each fact is for any model the catalogue names: a refusal naming less teaches nothing.
FLOORS = {OUTPUT: _floor(m.output for m in ROWS.values() if m.kind == CHAT),
          BUDGET: _floor(m.budget for m in ROWS.values() if m.kind == CHAT),
          INPUT: _floor(m.input or m.context for m in ROWS.values() if m.kind == CHAT)}


class Fact(NamedTuple):
    model: str
    fact: str
    value: int
    learned: float  # epoch seconds

    @property
    def expires(self) -> float:
        return self.learned + TTL_S

    def said(self) -> str:
        """How a flow note names it: when it was learned and until when it holds."""
        return (f"learned from Qwen's refusal at {_utc(self.learned)}, asked again after {_utc(self.expires)}")


def _changed(path: Path) -> float:
    """When the file (or its write-ahead log, where another process's commits land first) last changed."""
    wal = Path(f"{path}-wal")
    return max(path.stat().st_mtime, wal.stat().st_mtime if wal.exists() else 0.0)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


def valid(model: object, fact: object, value: object, learned: object) -> Fact | None:
    """A stored row as a fact, or None when it is not one (a damaged row, a value under the floor)."""
    if not isinstance(model, str) or not model or fact not in FACTS:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < FLOORS[str(fact)]:
        return None
    if isinstance(learned, bool) or not isinstance(learned, (int, float)):
        return None
    return Fact(model, str(fact), value, float(learned))


class LearnedFacts:
    """The facts Qwen taught, by (model, fact), and what its 400s said of models' thinking and streams."""

    def __init__(self, folder: Path | None = None, clock=time.time) -> None:
        self.folder = folder
        self.clock = clock
        self.facts: dict[tuple[str, str], Fact] = {}
        self.thinking: dict[str, Thinking] = {}  # thinking-only, effort-native (a 400 said so)
        self.stream_only: set[str] = set()  # answers streams only (a 400 said so)
        self.system_first: set[str] = set()  # its chat template takes system text only first (a 400 said so)
        self.unknown: dict[str, int] = {}  # model -> 400s in a wording no reader knows (/metrics, /health)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._unwritable = False
        self._mtime = 0.0
        self._reloader: asyncio.Task | None = None
        if folder is not None:
            self._import_old(folder)
            if (folder / FILE).is_file():
                self._load(folder / FILE)

    # ---- reading, on a request's path ------------------------------------------------------------------

    def get(self, model: str, fact: str) -> Fact | None:
        """The fact while it holds (None: never learned, or past its day: the client's value goes up)."""
        if not self.facts:  # the common case: nothing learned, no key built
            return None
        found = self.facts.get((model, fact))
        return found if found is not None and found.expires > self.clock() else None

    def value(self, model: str, fact: str) -> int | None:
        found = self.get(model, fact)
        return found.value if found is not None else None

    def rows(self) -> list[Fact]:
        return sorted(self.facts.values())

    def shown(self) -> dict | None:
        """What /health shows: every fact (held or past its day) and the refusals no reader knew (None: nothing
        learned, nothing unknown met)."""
        if not self.facts and not self.unknown:
            return None
        now = self.clock()
        return {"facts": [{"model": f.model, "fact": f.fact, "value": f.value, "learned": _iso(f.learned),
                           "holds_until": _iso(f.expires), "held": f.expires > now} for f in self.rows()],
                "unknown_refusals": dict(self.unknown)}

    # ---- learning and forgetting -----------------------------------------------------------------------

    def learn(self, model: str, fact: str, value: int, now: float | None = None) -> Fact | None:
        """Keeps the fact (and writes it to the folder's file); None when it is not one the catalogue allows."""
        found = valid(model, fact, value, self.clock() if now is None else now)
        if found is None:
            return None
        self._put(found)
        self._store("INSERT OR REPLACE INTO facts VALUES (?,?,?,?)", found)
        return found

    def _put(self, found: Fact) -> None:
        self.facts[(found.model, found.fact)] = found

    def forget(self, model: str, fact: str | None = None) -> int:
        """Drops a model's facts (one, or all): Qwen is asked again at the next request."""
        gone = [k for k in self.facts if k[0] == model and (fact is None or k[1] == fact)]
        for k in gone:
            del self.facts[k]
        where, args = ("model=? AND fact=?", (model, fact)) if fact is not None else ("model=?", (model,))
        self._store(f"DELETE FROM facts WHERE {where}", args)
        return len(gone)

    def _store(self, sql: str, args: tuple) -> None:
        with self._lock:
            db = self._open()
            if db is None:
                return
            try:
                db.execute(sql, args)
            except Exception as e:
                if self.folder is None or local_failure(self.folder, e) is None:
                    raise

    # ---- the folder's file -----------------------------------------------------------------------------

    def _load(self, path: Path) -> None:
        query = "SELECT model, fact, value, learned FROM facts"
        try:
            self._mtime = _changed(path)
            if self._db is not None:  # this process's own connection sees every commit
                with self._lock:
                    rows = self._db.execute(query).fetchall()
            else:
                with contextlib.closing(read_only_copy(path)) as db:  # read without writing beside the file
                    rows = db.execute(query).fetchall()
        except (OSError, sqlite3.Error) as e:  # unreadable or broken: learned again from Qwen, once per model
            log.warning("qwen: learned facts in %s cannot be read (%s): Qwen is asked again", path, type(e).__name__)
            return
        self.facts = self.read_rows(rows, str(path))

    @staticmethod
    def read_rows(rows: Iterable[tuple], where: str) -> dict[tuple[str, str], Fact]:
        """Valid rows as facts; each other row skipped with one line (never a failed start)."""
        out = {}
        for row in rows:
            found = valid(*row) if len(row) == 4 else None
            if found is None:
                log.warning("qwen: a learned fact in %s is not valid and is skipped: %r", where, tuple(row)[:3])
                continue
            out[(found.model, found.fact)] = found
        return out

    def _import_old(self, folder: Path) -> None:
        """The output caps of a gateway before facts were dated and bounded: each still valid kept (learned
        now: it holds a day), the file renamed so that a forgotten cap does not come back."""
        old = folder / OLD_FILE
        if not old.is_file():
            return
        try:
            with contextlib.closing(read_only_copy(old)) as db:
                rows = db.execute("SELECT model, cap FROM caps").fetchall()
        except (OSError, sqlite3.Error):
            rows = []
        now = self.clock()
        for found in self.read_rows([(m, OUTPUT, c, now) for m, c in rows], str(old)).values():
            self.learn(found.model, found.fact, found.value, now)
        with contextlib.suppress(OSError):
            old.rename(old.with_name(OLD_FILE + ".imported"))

    def _open(self) -> sqlite3.Connection | None:
        if self._db is None and self.folder is not None and not self._unwritable:
            try:
                self._db = open_private_db(self.folder / FILE, timeout=5, setup=_SCHEMA)
            except (OSError, sqlite3.Error) as e:  # a read-only, full or broken folder: kept until a restart
                self._unwritable = True
                log.warning("qwen: learned facts are kept in memory only: %s cannot be written (%s)",
                            self.folder / FILE, type(e).__name__)
        return self._db

    def start(self) -> None:
        """Reads the folder's file again when it changed (another process forgot a fact): on the event loop."""
        if self._reloader is None and self.folder is not None:
            with contextlib.suppress(RuntimeError):
                self._reloader = asyncio.get_running_loop().create_task(self._reload(), name="qwen: learned facts")

    async def _reload(self) -> None:
        path = self.folder / FILE if self.folder is not None else None
        while path is not None:
            await asyncio.sleep(RELOAD_S)
            with contextlib.suppress(OSError):
                if _changed(path) != self._mtime:
                    self._load(path)

    def close(self) -> None:
        if self._reloader is not None:
            self._reloader.cancel()
            self._reloader = None
        if self._db is not None:
            self._db.close()
            self._db = None
