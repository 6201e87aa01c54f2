"""Anthropic's cache diagnostics on Qwen (docs/compatibility.md): a request's `diagnostics: {previous_message_id}`
(with or without the `cache-diagnosis-2026-04-07` beta header) is compared by the cache doctor's memory
(cache/diagnosis.py) with the request that answered that id, within the client's key, and the answer says why
the prompt cache could not reuse its prefix, in Anthropic's shape: `diagnostics.cache_miss_reason` on the
message and on `message_start`'s message.

`diagnostics` is null on a first turn (`previous_message_id: null`) and where the prefix only grew. Where the
structure promised a read and Qwen's usage says none came, no structural reason exists: `cache_miss_reason` is
`{"type": "unavailable"}` (Anthropic's own value for a diagnosis that names no change; never null, which its SDK
reads as "still pending") and `qwen_cache_miss` says what Qwen did: `evicted`, `expired` or `other_account`, with
the tokens it did not read — or `lookback`: every marker of the request more than 20 content blocks past the
prefix the compared response stored, which Qwen does not look back to. A whole answer says it on the message; a
stream, whose `message_start` goes out before Qwen's usage exists, on its `message_delta` (`final`).
`cache_missed_input_tokens` is the cache doctor's own figure of the tokens lost (what the compared response left
in Qwen's cache that this request did not read), from Qwen's usage: on a stream's `message_start`, before that
usage exists, its estimate, and on `message_delta` the figure where it differs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...cache.diagnosis import CHANGED, NOT_FOUND, UNAVAILABLE, Diagnoser
from ...cache_turn import Asked
from ...observer import cache_write_tokens, cached_tokens, usage_int
from .shape import bad

if TYPE_CHECKING:
    from ...exchange import Exchange

# The doctor's causes (cache/compare.CAUSES) in Anthropic's words; a routed model is a model Qwen reads another
# prefix under, an image's change or move a change of the messages
REASONS = {"model": "model_changed", "route": "model_changed", "system": "system_changed",
           "tool": "tools_changed", "tool_order": "tools_changed", "edited": "messages_changed",
           "mid_system": "messages_changed", "image": "messages_changed"}


def asked(body: dict) -> Asked | None:
    """What a Messages body asks: None without `diagnostics` (nothing kept, nothing compared)."""
    value = body.get("diagnostics")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad("diagnostics: Input should be a valid dictionary", "diagnostics")
    previous = value.get("previous_message_id")
    if previous is not None and not isinstance(previous, str):
        raise bad("diagnostics.previous_message_id: Input should be a valid string", "diagnostics.previous_message_id")
    return Asked(compare=True, compare_to=previous)


def answer(diagnoser: Diagnoser, ex: Exchange, message_id: str, usage: dict | None = None) -> dict | None:
    """The message's `diagnostics` (None: not asked, nothing to say). `usage`: Qwen's, when the answer is whole."""
    if ex.cache_ask is None:
        return None
    comparison = diagnoser.compare(ex)
    diagnoser.answered(ex, message_id)
    if comparison is None:
        return None
    prompt = usage_int(usage, "prompt_tokens")
    known = (prompt, cached_tokens(usage) or 0, cache_write_tokens(usage) or 0) if prompt is not None else None
    if comparison.outcome == CHANGED:
        reason = REASONS.get(comparison.cause or "", "messages_changed")
        return {"cache_miss_reason": {"type": reason, "cache_missed_input_tokens": diagnoser.missed(ex, known)}}
    if comparison.outcome == NOT_FOUND:
        return {"cache_miss_reason": {"type": "previous_message_not_found"}}
    if comparison.outcome == UNAVAILABLE:
        return {"cache_miss_reason": {"type": "unavailable"}}
    if known is None:
        return None
    did = diagnoser.qwen_did(ex, *known)
    if did is None:
        return None
    return {"cache_miss_reason": {"type": "unavailable"},
            "qwen_cache_miss": {"type": did.kind, "cache_missed_input_tokens": did.missed,
                                "cache_lifetime_seconds": int(did.lifetime)}}


def final(diagnoser: Diagnoser, ex: Exchange, message_id: str, usage: dict | None) -> dict | None:
    """What a stream's `message_delta` adds (Anthropic usage, as that event carries it): the Qwen-side miss its
    `message_start` could not know; None when the start said all there is."""
    if not isinstance(usage, dict) or ex.cache_ask is None:
        return None
    read, written = usage.get("cache_read_input_tokens") or 0, usage.get("cache_creation_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + read + written
    comparison = diagnoser.compare(ex)
    if comparison is None or comparison.outcome in (NOT_FOUND, UNAVAILABLE) or not prompt:
        return None
    said = answer(diagnoser, ex, message_id, {"prompt_tokens": prompt, "prompt_tokens_details": {
        "cached_tokens": read, "cache_creation_input_tokens": written}})
    if comparison.outcome == CHANGED and said is not None \
            and said["cache_miss_reason"]["cache_missed_input_tokens"] == comparison.missed:
        return None  # the start's estimate was the doctor's figure
    return said
