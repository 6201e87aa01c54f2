"""The named keys of a gateway on the shared database (`qwen_state_url`), kept in step (tenancy/source.py's half
for PostgreSQL): the first read, each reload a NOTIFY asks for (saved to the local copy, then applied), and each
`qwen-keys` change acknowledged once applied ("key-ack:<token>:<name>": qwen-keys waits for every running gateway's
word). A change heard and not read — the pool down and the listener's route too — refuses that key (503) until it
is read: a revoke never goes unapplied on a gateway that heard of it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import Protocol

from . import log_lines
from .ring import Keyring
from .shared_copy import KeyCopy
from .spend import SpendBook
from .team_pg import SharedKeys

log = logging.getLogger("qwen")


class Followed(Protocol):
    """What a read changes (the Team)."""

    ring: Keyring
    book: SpendBook


class SharedFollow:
    def __init__(self, shared: SharedKeys, copy: KeyCopy, state: Followed, install: Callable[..., None],
                 why: Callable[[], str]) -> None:
        self.shared, self.copy, self.state = shared, copy, state
        self._install, self._why = install, why
        self._reloading = asyncio.Lock()  # one read of the shared keys at a time: applied (and saved) in order

    async def first_read(self, settled: asyncio.Event) -> None:
        try:
            await self.reload(None)
        except Exception as e:
            log.warning("qwen: could not read the named client keys from the shared database: %s (retrying)",
                        self._why() or type(e).__name__)
        finally:
            settled.set()

    async def reload(self, name: str | None) -> None:
        """Every key (None), or one a NOTIFY named (a change, or only its spend): saved to the copy, then
        applied."""
        async with self._reloading:
            try:
                keys = await self.shared.keys(name)
                spend = await self.shared.spend(self.state.book.day, name)
            except Exception as e:
                if name is not None:  # a change heard, and not read: the key refused until it is
                    self._unread(name, e)
                raise
            old = self.state.ring
            first = old.provisional or not old.loaded
            if name is None:
                new: Keyring | None = Keyring(tuple(sorted(keys, key=lambda r: r.name)))
            else:
                rec = keys[0] if keys else None
                new = None if old.by_name.get(name) == rec and not first else old.replaced(name, rec)
            if new is not None:
                await self.copy.keep(new.records)  # before it takes effect: a restart never finds less
                self._install(new, first=first, where=log_lines.SHARED)
            self.state.book.replace(spend, name)

    async def spent(self, name: str | None) -> None:
        """Another gateway wrote a key's spend ("key-spend:<name>"): read into the book when it can be. No change of
        the key: one not read refuses nothing (a key with limits or budgets is refused by its own counts while
        they cannot be made; before, announced as a change, a cut-off gateway refused a key without limits)."""
        if not name:
            return
        async with self._reloading:
            with contextlib.suppress(Exception):
                self.state.book.replace(await self.shared.spend(self.state.book.day, name), name)

    def _unread(self, name: str, e: Exception) -> None:
        ring = self.state.ring
        rec = ring.by_name.get(name)
        if rec is not None and not rec.unread:
            self.state.ring = ring.replaced(name, dataclasses.replace(rec, unread=True))  # never in the copy
            log.warning("qwen: key %s changed in the shared database and this gateway could not read the change "
                        "(%s): it refuses the key (503) until it can", name, self._why() or type(e).__name__)

    async def ack(self, key: str | None) -> None:
        """A qwen-keys change ("key-ack:<token>:<name>"): the key read again, then this gateway says it applied it
        (or that it refuses the key, unable to read it)."""
        if not key:
            return
        token, _, name = key.partition(":")
        with contextlib.suppress(Exception):
            await self.reload(name)
        rec = self.state.ring.by_name.get(name)
        await self.shared.ack(token, refusing=rec is not None and rec.unread)
