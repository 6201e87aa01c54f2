"""What every account kept in a file and refreshed from a server shares (OAuth logins, web sessions): one
refresh at a time in this process (every waiter shares it), under a lock file across processes (touched
while a slow refresh runs, so nobody breaks it as stale), and a pause of `refresh_retry_s` after a refresh
that failed for a network or server reason."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Generic, TypeVar

from .base import Account, AccountUnavailable
from .credfile import FileLock, LockTimeout
from .settings import AuthSettings
from .state import AccountState, RefreshLockTimeout
from .storage import StateUnavailable

T = TypeVar("T")


class RefreshedFileAccount(Account, Generic[T]):
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

    def _failed(self, message: str) -> AccountUnavailable:
        """A refresh failed for a network or server reason: none is tried for `refresh_retry_s`."""
        err = AccountUnavailable(message)
        self._failure = err
        self._failed_until = time.monotonic() + self.settings.refresh_retry_s
        self.state.set(self.name, last_error=message)
        return err

    def _refreshed(self) -> None:
        """A refresh succeeded: the backoff window starts, a former error is cleared."""
        self._refreshed_at = time.monotonic()
        if self.state.get(self.name)["last_error"]:
            self.state.set(self.name, last_error=None)
