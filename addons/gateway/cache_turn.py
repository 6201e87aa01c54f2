"""The prompt cache's records on an exchange: what the cache doctor (observe/cache_doctor.py) made of one turn,
on its result for the observers after it (mitmweb's comment and view, the ledger's row, the metrics); and the
cache diagnostics its client asked for, with what the gateway answered (cache/diagnosis.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class Prefix(Protocol):
    """A turn's prefix as the cache doctor fingerprinted it (cache/compare.Turn: hashes and sizes, never prompt
    text), held here for the doctor alone to read: the core carries it and does not look inside."""

    lifetime: float  # seconds its markers asked Qwen to keep it


@dataclass(slots=True)
class CacheTurn:
    """A conversation's turn as the cache doctor saw it (observe/cache_doctor.py): Qwen's cache share and, when it
    missed more than the turn it continues, why (`cause`: cache/compare.CAUSES; `lost` tokens that turn's cache
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
    lifetime: float | None = None  # seconds its cache markers asked Qwen to keep the prefix (None: no markers)


@dataclass(slots=True)
class Comparison:
    """This request's prefix against the one of the response a client named (cache/diagnosis.py)."""

    outcome: str  # diagnosis.FIRST (none named), SAME, CHANGED, NOT_FOUND, UNAVAILABLE (only settings changed)
    cause: str | None = None  # CHANGED: the prefix's change (cache/compare.CAUSES)
    missed: int = 0  # CHANGED: this request's tokens after the change (an estimate)
    reusable: int = 0  # CHANGED: the compared request's tokens before it (an estimate)
    against: Prefix | None = None


@dataclass(slots=True)
class QwenDid:
    """What Qwen did where the structure promised a read: `kind` expired, evicted or other_account."""

    kind: str
    missed: int  # tokens the compared response left in the cache that this one did not read
    lifetime: float  # seconds the compared response's prefix was to live


@dataclass(slots=True)
class Asked:
    """What the client asked (set by its endpoint's translation) and what the gateway made of it."""

    compare: bool  # a comparison was asked (Anthropic's `diagnostics`, Responses' `comparison_response_id`)
    compare_to: str | None = None  # the earlier response's id (None: Anthropic's first turn)
    keep: bool = True  # this response is kept under its id for a later request to name
    answer_id: str = ""
    seen: Prefix | None = None  # this request's turn, fingerprinted once
    comparison: Comparison | None = None
