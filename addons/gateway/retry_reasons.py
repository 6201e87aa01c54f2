"""Why the gateway sent a request to Qwen again: the retries an exchange's attempt records (exchange.py re-exports
them), which the request line, the metrics and the record count; the models a fallback group passed on from."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple


class RetryReason(enum.StrEnum):
    """Why the gateway sent a request to Qwen again (metrics count these)."""
    REFRESHED = "refreshed"  # 401: the login was refreshed
    ROTATED = "rotated"  # quota exhausted: another account
    THROTTLED = "throttled"  # rate limited: waited, same or another account
    RECONNECTED = "reconnected"  # a pooled connection had died before the request got through
    THINKING = "thinking"  # the model refused its thinking settings: learned, sent again
    STREAM_ONLY = "stream_only"  # the model answers streams only: learned, sent again as a stream
    CAPPED = "capped"  # the model refused the output cap: its cap learned, sent again within it
    NEW_CHAT = "new_chat"  # a pinned Qwen Chat chat refused the turn (stale parent): sent again in a new chat
    TEMPLATE = "template"  # the chat template refused the messages' shape: learned, sent again in its shape
    TRUNCATED = "truncated"  # over Qwen's context with Responses `truncation: "auto"`: the oldest items dropped
    CONTINUED = "continued"  # a stream broke mid-answer: continued from what was answered (turn/continuation.py)
    FELL_BACK = "fell_back"  # refused for its model: the next of its group (qwen_fallbacks, upstream/fallback.py)


@dataclass(frozen=True)
class Retry:
    reason: RetryReason
    account: str  # the account whose answer caused the retry
    wait_s: float = 0.0


class Refusal(NamedTuple):
    """A model the upstream refused, where a fallback group (qwen_fallbacks) sent the request on: upstream/fallback.py."""

    model: str
    why: str  # models/fallbacks.py's words: not found, no access, …
    error: Exception  # the client's error for it: the first model's is answered when every model refused
    tried: int  # accounts tried until then: the next model's are those after
