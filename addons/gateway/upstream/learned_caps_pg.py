"""Learned output caps shared by several gateways through PostgreSQL (`qwen_state_url`): a cap one gateway learned
from Qwen's 400 holds the others' requests too, so the team pays the refusal once.

The local copy (learned_caps.py: the dict a request reads, and the folder's file) stays the read path. A cap
learned here is written to the database by a task, with a NOTIFY: the other gateways' listeners copy it at once
(and every REFRESH_S, in case a notification was lost). A cap learned while the database is away is shared when
it is back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from ..storage.health import StateUnavailable
from ..storage.pg import Database
from .learned_caps import LearnedCaps

log = logging.getLogger("qwen")

COMPONENT = "learned_caps"
STEPS = ("CREATE TABLE learned_caps (model TEXT PRIMARY KEY, cap INTEGER NOT NULL, learned DOUBLE PRECISION)",)
_UPSERT = ("INSERT INTO learned_caps (model, cap, learned) VALUES (%s,%s,%s) ON CONFLICT (model) DO UPDATE SET "
           "cap=EXCLUDED.cap, learned=EXCLUDED.learned")


class SharedLearnedCaps(LearnedCaps):
    REFRESH_S = 30.0

    def __init__(self, folder: Path | None, db: Database) -> None:
        super().__init__(folder)
        self.db = db
        self._listener: asyncio.Task | None = None
        self._unshared: dict[str, tuple[int, float]] = {}  # model -> the cap the database could not take yet
        self.start()  # made on the event loop (configure): listening before the first request

    def start(self) -> None:
        """Listen for the other gateways' caps (on the event loop; at first use when there was none yet)."""
        if self._listener is None:
            with contextlib.suppress(RuntimeError):
                loop = asyncio.get_running_loop()
                self._listener = loop.create_task(self._listen(), name="qwen: shared learned caps")
                self.db.health.when_back(self._share_unshared, loop)

    async def _listen(self) -> None:
        await self.db.follow(COMPONENT, STEPS, "cap", self._copy, every=self.REFRESH_S, what="learned output caps")

    async def _copy(self, model: str | None = None) -> None:
        """The database's caps (one, or all) into the local copy."""
        where, args = (" WHERE model=%s", (model,)) if model is not None else ("", ())
        for name, cap, learned in await self.db.fetch(f"SELECT model, cap, learned FROM learned_caps{where}", args):
            if self.get(name) != cap:
                LearnedCaps.learn(self, name, int(cap), float(learned or 0.0))

    def learn(self, model: str, cap: int, now: float) -> None:
        super().learn(model, cap, now)
        self._spawn(model, cap, now)

    def _spawn(self, model: str, cap: int, now: float) -> None:
        self.start()
        with contextlib.suppress(RuntimeError):  # no event loop (a script): local only
            self.db.background(self._write(model, cap, now), "qwen: share a learned cap")

    async def _write(self, model: str, cap: int, now: float) -> None:
        try:
            await self.db.amigrate(COMPONENT, STEPS)
            await self.db.execute(_UPSERT, (model, cap, now), notify=f"cap:{model}")
        except StateUnavailable:  # said once by the database's Health: shared when it is back
            self._unshared[model] = (cap, now)
        except Exception as e:  # this gateway keeps the cap; the others learn it from Qwen themselves
            log.warning("qwen: could not share a learned output cap: %s", type(e).__name__)

    def _share_unshared(self) -> None:
        unshared, self._unshared = self._unshared, {}
        for model, (cap, now) in unshared.items():
            self._spawn(model, cap, now)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            self._listener = None
        super().close()
