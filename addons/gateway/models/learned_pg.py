"""Learned facts shared by several gateways through PostgreSQL (`qwen_state_url`): a fact one gateway learned from
Qwen's 400 holds the others' requests too, so the team pays the refusal once; a fact forgotten anywhere
(`qwen-usage learned --forget`) is forgotten everywhere.

The local copy (learned.py: the dicts a request reads, and the folder's file) stays the read path. A fact learned
here is written to the database by a task, with a NOTIFY "fact:<model>": the other gateways' listeners read that
model's rows again at once (and everything every REFRESH_S, in case a notification was lost). A fact learned
while the database is away is shared when it is back. Rows are checked as the folder's are: an invalid one is
skipped with one line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from ..storage.health import StateUnavailable
from ..storage.pg import Database
from .learned import FLOORS, OUTPUT, Fact, LearnedFacts

log = logging.getLogger("qwen")

COMPONENT = "learned_caps"
KIND = "fact"
STEPS = (
    "CREATE TABLE learned_caps (model TEXT PRIMARY KEY, cap INTEGER NOT NULL, learned DOUBLE PRECISION)",
    # facts of any kind, dated and bounded: the caps still valid kept (learned anew: each holds a day)
    "CREATE TABLE learned_facts (model TEXT NOT NULL, fact TEXT NOT NULL, value BIGINT NOT NULL, "
    f"learned DOUBLE PRECISION NOT NULL, PRIMARY KEY (model, fact)); INSERT INTO learned_facts "
    f"SELECT model, '{OUTPUT}', cap, extract(epoch from now()) FROM learned_caps WHERE cap >= {FLOORS[OUTPUT]}; "
    "DROP TABLE learned_caps",
)
_UPSERT = ("INSERT INTO learned_facts (model, fact, value, learned) VALUES (%s,%s,%s,%s) ON CONFLICT (model, fact) "
           "DO UPDATE SET value=EXCLUDED.value, learned=EXCLUDED.learned")
_ROWS = "SELECT model, fact, value, learned FROM learned_facts"


class SharedLearnedFacts(LearnedFacts):
    REFRESH_S = 30.0

    def __init__(self, folder: Path | None, db: Database) -> None:
        super().__init__(folder)
        self.db = db
        self._listener: asyncio.Task | None = None
        self._unshared: dict[tuple[str, str], Fact] = {}  # learned while the database could not take it
        self.start()  # made on the event loop (configure): listening before the first request

    def start(self) -> None:
        """Listen for the other gateways' facts (on the event loop; at first use when there was none yet)."""
        if self._listener is None:
            with contextlib.suppress(RuntimeError):
                loop = asyncio.get_running_loop()
                self._listener = loop.create_task(self._listen(), name="qwen: shared learned facts")
                self.db.health.when_back(self._share_unshared, loop)

    async def _listen(self) -> None:
        await self.db.follow(COMPONENT, STEPS, KIND, self._copy, every=self.REFRESH_S, what="learned facts")

    async def _copy(self, model: str | None = None) -> None:
        """The database's facts (one model's, or all) as the local copy: what it no longer holds is forgotten
        here too (a fact learned here and not shared yet stays)."""
        where, args = (" WHERE model=%s", (model,)) if model is not None else ("", ())
        found = self.read_rows(await self.db.fetch(_ROWS + where, args), "the shared database")
        kept = {k: v for k, v in self.facts.items() if model is not None and k[0] != model or k in self._unshared}
        self.facts = {**kept, **found}

    def learn(self, model: str, fact: str, value: int, now: float | None = None) -> Fact | None:
        found = super().learn(model, fact, value, now)
        if found is not None:
            self._unshared[(found.model, found.fact)] = found  # kept through a reload until the database has it
            self._spawn(_UPSERT, (found.model, found.fact, found.value, found.learned), found)
        return found

    def forget(self, model: str, fact: str | None = None) -> int:
        gone = super().forget(model, fact)
        where, args = ("model=%s AND fact=%s", (model, fact)) if fact is not None else ("model=%s", (model,))
        self._spawn(f"DELETE FROM learned_facts WHERE {where}", args, None, model)
        return gone

    def _spawn(self, sql: str, args: tuple, found: Fact | None, model: str = "") -> None:
        self.start()
        with contextlib.suppress(RuntimeError):  # no event loop (a script): local only
            self.db.background(self._share(sql, args, found, model or (found.model if found else "")),
                               "qwen: share a learned fact")

    async def _share(self, sql: str, args: tuple, found: Fact | None, model: str) -> None:
        try:
            await self.db.amigrate(COMPONENT, STEPS)
            await self.db.execute(sql, args, notify=f"{KIND}:{model}")
            if found is not None:
                self._unshared.pop((found.model, found.fact), None)
        except StateUnavailable:  # said once by the database's Health: shared when it is back
            pass
        except Exception as e:  # this gateway keeps the fact; the others learn it from Qwen themselves
            log.warning("qwen: could not share a learned fact: %s", type(e).__name__)

    def _share_unshared(self) -> None:
        for found in list(self._unshared.values()):
            self._spawn(_UPSERT, (found.model, found.fact, found.value, found.learned), found)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            self._listener = None
        super().close()
