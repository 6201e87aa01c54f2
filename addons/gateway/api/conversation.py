"""Which conversation a request continues, read from the client's own request (`ex.conversation`, a
`Conversation` the retry policy hands the account pool: the turns of one conversation stay on the account
that holds its prompt cache).

In the order the first one present decides:
- a session the client names: Claude Code's `metadata.user_id` (a JSON string holding `session_id`, or the
  older `user_…_session_<uuid>`); Codex's `prompt_cache_key` (its conversation id) — any client's
  `prompt_cache_key` (chat completions and Responses);
- `user` (chat completions, Responses) or another `metadata.user_id`: every conversation of that user;
- else the conversation's opening: its system (and developer) messages and first user message, as the
  dialect translated them. Every turn resends them, and a Responses `previous_response_id` chain's history
  begins with its first turn's, so each turn of a chain has the same opening.

Only a digest is kept (never the client's text or ids). The opening is read once per request from the
translated messages, its text hashed without encoding the body again. The session headers some clients also
send (`X-Claude-Code-Session-Id`, Codex's `session_id`) carry the same ids as those body fields.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..accounts import Conversation

if TYPE_CHECKING:
    from ..exchange import Exchange

_CLAUDE_SESSION = re.compile(r'"session_id"\s*:\s*"([^"]+)"|_session_([0-9A-Za-z-]+)$')
_OPENING_ROLES = ("system", "developer")


def keyed(to_chat: Callable[[dict, Exchange], dict]) -> Callable[[dict, Exchange], dict]:
    """An endpoint's `to_chat` that also says which conversation the request continues."""

    def translate(body: dict, ex: Exchange) -> dict:
        chat = to_chat(body, ex)
        ex.conversation = of(body, chat)
        return chat

    return translate


def of(body: dict, chat: dict) -> Conversation | None:
    """The conversation of a request: `body` the client's, `chat` its translation (the pivot's messages)."""
    key = body.get("prompt_cache_key")
    if isinstance(key, str) and key:
        return _named("prompt_cache_key", key)
    metadata = body.get("metadata")
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if isinstance(user_id, str) and user_id:
        session = _CLAUDE_SESSION.search(user_id)
        if session is not None:
            return _named("session", session.group(1) or session.group(2))
        return _named("user", user_id)
    user = body.get("user")
    if isinstance(user, str) and user:
        return _named("user", user)
    return opening(chat.get("messages"))


def opening(messages: object) -> Conversation | None:
    """The digest of a conversation's opening: its leading system messages and first user message."""
    if not isinstance(messages, list) or not messages:
        return None
    parts = [b"opening"]
    for m in messages:
        if not isinstance(m, dict):
            continue
        role = m.get("role")
        parts.append(b"\0" + str(role).encode() + b"\0" + _text(m.get("content")).encode("utf-8", "surrogatepass"))
        if role not in _OPENING_ROLES:
            break
    return Conversation(_digest(b"".join(parts)), "opening")  # each request its own (the engine writes on it)


# Every turn resends the opening: its digest is computed once and read back (a sha256 was ~9k instructions of a
# request). Bounded: an opening is a system prompt of a few to some 60 kB.
@functools.lru_cache(maxsize=128)
def _digest(opening: bytes) -> str:
    return hashlib.sha256(opening).hexdigest()[:32]


def _named(source: str, value: str) -> Conversation:
    digest = hashlib.sha256(f"{source}\0{value}".encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return Conversation(digest, source)


def _text(content: object) -> str:
    """A message's text (its text parts; other parts by their type: an image does not change who it is)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text") or p.get("type") or "") if isinstance(p, dict) else "" for p in content)
    return ""
