"""The gateway's own looks at the batches it holds that are not billed yet: Qwen bills a batch when it completes it,
whether or not a client looks, so every `qwen_batch_poll` seconds (60) the gateway asks Qwen about each one, on the
account that holds it, and bills those that have ended (routes.BatchRoutes.look, bills.py). A batch is held by the
gateways that have its account: with `qwen_state_url`, each of them looks, and the bill is written once
(bills.py). A batch that Qwen no longer knows (404) has nothing left to bill."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ...errors import GatewayError
from ...settings.config import Config
from ...storage.health import StateUnavailable
from .routes import BatchRoutes, json_object, own_look

log = logging.getLogger("qwen")

MOST = 1000  # batches looked at per round at most, the oldest first


class BatchWatch:
    def __init__(self, routes: BatchRoutes, config: Callable[[], Config]) -> None:
        self.routes, self.config = routes, config
        self._task: asyncio.Task | None = None
        self._failing = False  # a round failed for no storage outage: said once, until one succeeds

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="qwen: batch watch")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.config().batch_poll)
            try:
                await self.round()
                self._failing = False
            except StateUnavailable:
                pass  # the storage's outage, said by its health; the next round tries again
            except Exception:
                if not self._failing:
                    log.exception("qwen: the gateway's look at its unfinished batches failed (tried again every "
                                  "qwen_batch_poll seconds)")
                self._failing = True

    async def round(self) -> int:
        """One look at each batch not billed yet whose account this gateway has: how many Qwen was asked about."""
        config = self.config()
        store, routes = self.routes.store(config), self.routes
        asked = 0
        for record in await store.unsettled(MOST):
            suffix, ex = f"batches/{record.id}", own_look(f"batches/{record.id}")
            try:  # through the retry policy: a refused key or a throttle is the pool's to hear, as a client's look
                status, _, data = await routes.calls.call(ex, config, "GET", suffix, holder=record.account)
            except GatewayError:
                # not this gateway's account now (a gateway that has it looks), the account not usable now, Qwen
                # out of reach: the next round
                continue
            asked += 1
            cred = ex.attempt.cred  # the holder's, which answered
            if status == 404:
                await store.settled(record.id)
            elif status == 200 and cred is not None:
                await routes.look(store, record, json_object(data), cred, config)
        return asked

