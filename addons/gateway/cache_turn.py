"""What the cache doctor (observe/cache_doctor.py) made of one turn, on the exchange's result for the observers
after it: mitmweb's comment and view, the ledger's row, the metrics."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class CacheTurn:
    """A conversation's turn as the cache doctor saw it (observe/cache_doctor.py): Qwen's cache share and, when it
    missed more than the turn it continues, why (`cause`: prefix_diff.CAUSES; `lost` tokens that turn's cache
    should have served, `lost_usd` what they cost above cache reads). Hashes and positions, never prompt text."""

    conversation: str  # the conversation's digest (accounts.Conversation.key)
    turn: int  # its number in the conversation, from 1 (as this gateway process counted)
    prompt: int
    read: int  # prompt tokens read from Qwen's cache; `written`: stored in its explicit cache
    written: int
    cause: str | None = None
    lost: int = 0
    lost_usd: float | None = None
    line: str = ""  # the one-line verdict (mitmweb's comment); `diff`: the prefix's first change (its view)
    diff: dict | None = None
