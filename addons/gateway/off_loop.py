"""What a request's own work hands to a worker thread rather than hold the event loop: parsing a body of PARSE_BYTES
or more (ingress/body.py), walking a chat body of more than MESSAGES messages (its check and translation,
api/chat.py; Qwen's body made of it, upstream/engine.py). 200,000 one-word messages (7.9 MB) held the loop for
seconds (issue 79 item 6); a few hundred messages, or a MiB of JSON, cost a few milliseconds, about a thread's
hand-over. Responses' items have their own bound (api/responses/endpoints.OFF_LOOP_ITEMS)."""

from __future__ import annotations

MESSAGES = 256
PARSE_BYTES = 1 << 20


def many_messages(body: object) -> bool:
    """A chat-form body of more than MESSAGES messages."""
    messages = body.get("messages") if isinstance(body, dict) else None
    return isinstance(messages, list) and len(messages) > MESSAGES
