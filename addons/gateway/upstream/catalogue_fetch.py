"""A live model catalogue fetched in the background (upstream/dashscope/key_models.py for key accounts,
upstream/qwenweb/live_models.py for the web session): at most one fetch at a time, started on demand and never
awaited on a request's path (models/model_map.LiveModels holds what was fetched)."""

from __future__ import annotations

import asyncio


class CatalogueFetch:
    _task: asyncio.Task | None = None

    def refresh_soon(self) -> None:
        """Starts a fetch unless one is under way (or there is no event loop: then the cache stays)."""
        if self._task is not None and not self._task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._task = loop.create_task(self.refresh())

    async def refresh(self) -> None:
        """One fetch, its result (or failure) put into the LiveModels."""
        raise NotImplementedError
