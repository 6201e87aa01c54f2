"""Qwen's prompt cache markers as a chat body carries them (`cache_control`, `prompt_cache_breakpoint`), and what
they tell the turn: whether a body's last message ends in one (turn/continuation.py bills a broken stream by it).
The cache doctor reads parts without them (cache/parts.py)."""

from __future__ import annotations

MARKERS = frozenset(("cache_control", "prompt_cache_breakpoint"))


def marked_to_end(body: object) -> bool:
    """Whether a chat-form body's last message ends in a cache marker: Qwen's explicit cache then holds its whole
    prompt once answered, so what the next request on that account reads of it is the prompt's length, counted
    by Qwen (turn/answer_so_far.py)."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return False
    last = messages[-1]
    content = last.get("content")
    if isinstance(content, list) and content and isinstance(content[-1], dict):
        return not MARKERS.isdisjoint(content[-1])
    return not MARKERS.isdisjoint(last)
