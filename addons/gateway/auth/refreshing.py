"""What every account kept in a file and refreshed from a server shares (OAuth logins, web sessions): one
refresh at a time in this process (every waiter shares it), under a lock file across processes (touched
while a slow refresh runs, so nobody breaks it as stale), a pause of `refresh_retry_s` after a refresh
that failed for a network or server reason, and, under the lock before each refresh, the newer state a
killed refresh left in a temp file adopted (stranded.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Generic, TypeVar

from ..accounts import AccountUnavailable
from ..settings.auth import AuthSettings
from ..storage.health import StateUnavailable
from . import stranded
from .account import Account
from .filelock import FileLock, LockTimeout
from .state import AccountState, RefreshLockTimeout

T = TypeVar("T")
log = logging.getLogger("qwen")


class RefreshedFileAccount(Account, Generic[T]):
    stranded_kind: stranded.FileKind  # what the file holds, for a temp file a killed refresh left

    def __init__(self, name: str, path: Path, settings: AuthSettings, state: AccountState) -> None:
        self.name = name
        self.path = path
        self.lock_path = path.with_suffix(".lock")
        self.settings = settings
        self.state = state
        self._checked = float("-inf")
        self._inflight: asyncio.Future[T] | None = None
        self._failure: AccountUnavailable | None = None
        self._failed_until = 0.0
        self._refreshed_at = float("-inf")  # monotonic time of our last successful refresh
        self._stranded = False  # a temp file of the file was there at the first look: refresh (adopt) first
        self._left: set[str] = set()  # temp files said to be left alone (said once)

    @property
    def refreshing(self) -> bool:
        return self._inflight is not None and not self._inflight.done()

    async def _single_flight(self, start: Callable[[], Awaitable[T]]) -> T:
        """The refresh under way, or a new one: every waiter shares one."""
        if self._inflight is None or self._inflight.done():
            fut = asyncio.ensure_future(start())
            self._inflight = fut
            fut.add_done_callback(self._flight_done)
        return await asyncio.shield(self._inflight)

    def _flight_done(self, fut: asyncio.Future) -> None:
        if self._inflight is fut:
            self._inflight = None
        if not fut.cancelled():
            fut.exception()  # retrieved: no "never retrieved" warning when nobody waited

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        """The account's lock file, held (and touched) for the block; with shared state on PostgreSQL also
        the account's advisory lock there: one refresher across machines."""
        lock = FileLock(self.lock_path, stale_after=self.settings.lock_stale_s)
        try:
            await asyncio.to_thread(lock.acquire)
        except LockTimeout as e:
            raise self._failed(f"{self.name}: {e}") from e
        beat = asyncio.ensure_future(self._heartbeat(lock))
        try:
            try:
                async with self.state.refresh_lock(self.name):
                    yield
            except RefreshLockTimeout as e:
                raise self._failed(f"{self.name}: another gateway's refresh did not finish in time") from e
            except StateUnavailable as e:  # no refresh without the lock that makes it the only one
                raise self._failed(f"{self.name}: the refresh waits for the shared database ({e.message})") from e
        finally:
            beat.cancel()
            await asyncio.to_thread(lock.release)

    async def _heartbeat(self, lock: FileLock) -> None:
        every = max(self.settings.lock_stale_s / 3, 0.05)
        while True:
            await asyncio.sleep(every)
            await asyncio.to_thread(lock.touch)

    def _look_for_stranded(self) -> None:
        """At the first look at the file (a start): did a refresh die before its rename? One listdir."""
        self._stranded = bool(stranded.temps(self.path))

    def _recover(self) -> None:
        """Under the lock, blocking: finish the rename of a refreshed file a killed process left in its temp
        file (stranded.py), and say what was done."""
        self._stranded = False
        try:
            found = stranded.recover(self.path, self.stranded_kind)
        except OSError as e:
            log.warning("qwen: %s: could not adopt the refreshed file left in a temp file (%s)", self.name,
                        type(e).__name__)
            return
        said, self._left = self._left, {name for name, _ in found.left}
        found.left = [(name, why) for name, why in found.left if name not in said]  # said once, not per refresh
        for line in found.lines(self.name):
            log.warning(line)

    def _failed(self, message: str) -> AccountUnavailable:
        """A refresh failed for a network or server reason: none is tried for `refresh_retry_s`."""
        err = AccountUnavailable(message, transient=True)
        self._failure = err
        self._failed_until = time.monotonic() + self.settings.refresh_retry_s
        self.state.set(self.name, last_error=message)
        return err

    def _refreshed(self) -> None:
        """A refresh succeeded: the backoff window starts, a former error is cleared."""
        self._refreshed_at = time.monotonic()
        if self.state.get(self.name)["last_error"]:
            self.state.set(self.name, last_error=None)
