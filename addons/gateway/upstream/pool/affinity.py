"""Which account served each conversation (`Conversation.key` → account name), for the pool: turns of one
conversation go back to it while it is usable, since Qwen's prompt cache is per account.

Bounded: at most `max_entries` conversations, the least recently used dropped first; an entry lapses as long
after its conversation's last turn as that turn asked Qwen's cache to last: five minutes (Qwen's explicit
cache, reset on each hit), an hour when the body Qwen got asked Qwen4's hour (`keep(..., ttl_s)`: the pool's
`hold`). Memory only here; affinity_pg.py shares the entries between gateways.

A new conversation goes where its shared prefix (model, tools, system prompt: `Conversation.prefix`) was
cached by another one: the prefix has its own entry, kept by every conversation that carried it here, and
lapsing as theirs do. New sessions of one agent thus go to one account while it is usable (a cooling account
sends them on, and the prefix follows); conversations with different prefixes still spread round-robin.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...accounts import Conversation

TTL_S = 300.0  # Qwen's explicit cache: five minutes, reset on each hit
MAX_ENTRIES = 10_000


class Affinity:
    shared = False  # a local miss may be found in a shared copy (`fetch`)

    def __init__(self, *, ttl_s: float = TTL_S, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        # key -> (account, expires, when the shared copy's entry expires: 0.0 when it has none)
        self._entries: OrderedDict[str, tuple[str, float, float]] = OrderedDict()
        self._prefixes: OrderedDict[str, str] = OrderedDict()  # a conversation's key -> its prefix's, when new here

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> str | None:
        """The account that served the conversation, from memory (no I/O): None when unknown or lapsed."""
        hit = self._entries.get(key)
        if hit is None:
            return None
        if hit[1] <= time.time():
            del self._entries[key]
            return None
        return hit[0]

    async def placed(self, conversation: Conversation) -> str | None:
        """The account for a conversation's turn: the one that served it; for a new one, the one that holds
        its shared prefix, when one does (None: the round-robin's)."""
        pinned = await self._account(conversation.key)
        if pinned is not None or conversation.prefix is None:
            return pinned
        prefix = conversation.prefix()
        if prefix is None:
            return None
        self._prefixes[conversation.key] = prefix
        while len(self._prefixes) > self.max_entries:
            self._prefixes.popitem(last=False)
        return await self._account(prefix)

    async def _account(self, key: str) -> str | None:
        """An entry's account: from memory, else (gateways sharing state) from the shared copy."""
        pinned = self.get(key)
        if pinned is None and self.shared:
            pinned = await self.fetch(key)
        return pinned

    def served(self, conversation: Conversation, account: str, *, exact: bool = False) -> None:
        """`account` served the conversation's turn (`keep`), and so holds its prefix too, when it has one here."""
        self.keep(conversation.key, account, conversation.lifetime_s, exact=exact)
        prefix = self._prefixes.get(conversation.key)
        if prefix is not None:  # never shortened: another conversation may have asked it longer
            self.keep(prefix, account, conversation.lifetime_s)

    async def fetch(self, key: str) -> str | None:
        """The shared copy's account for a conversation memory does not know (another gateway's turn)."""
        return None

    def keep(self, key: str, account: str, ttl_s: float | None = None, *, exact: bool = False) -> None:
        """`account` served the conversation's turn: its entry, refreshed for `ttl_s` (the default: `self.ttl_s`)
        but never shortened unless `exact` (the lifetime the turn's body asked of Qwen, known once it is built);
        shared when it is new, moved, or the shared copy's entry has less than half its life left."""
        now = time.time()
        old = self._entries.get(key)
        ttl_s = self.ttl_s if ttl_s is None else ttl_s
        expires = now + ttl_s
        if not exact and old is not None and old[0] == account:
            expires = max(expires, old[1])
        shared_until = old[2] if old is not None and old[0] == account else 0.0
        if exact and shared_until > expires:
            shared_until = 0.0  # the shared copy's entry outlives what was asked: write it again
        if self.shared and shared_until - now < (expires - now) / 2:
            self._share(key, account, expires)
            shared_until = expires
        self._entries[key] = (account, expires, shared_until)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def learn(self, key: str, account: str, expires: float) -> None:
        """An entry the shared copy holds (read, or another gateway's write): kept as it is there."""
        if expires > time.time():
            self._entries[key] = (account, expires, expires)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def _share(self, key: str, account: str, expires: float) -> None:
        """Write the entry where other gateways read it (nothing to do in memory alone)."""

    def close(self) -> None:
        """Stop sharing (nothing to stop in memory alone)."""
