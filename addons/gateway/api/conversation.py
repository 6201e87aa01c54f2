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

A new conversation also carries the digest of what it shares with others (`prefix`: the model, the tools and
the leading system messages, computed only when the pool asks, for a conversation it does not know): Qwen
caches that prefix per account, so a new session goes where an earlier one wrote it (upstream/pool/affinity.py).

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

from .. import jsonio
from ..accounts import Conversation

if TYPE_CHECKING:
    from ..exchange import Exchange

_CLAUDE_SESSION = re.compile(r'"session_id"\s*:\s*"([^"]+)"|_session_([0-9A-Za-z-]+)$')
_OPENING_ROLES = ("system", "developer")
# Qwen caches no prefix under 1,024 tokens (Model Studio's "Context cache"): ~4 characters a token
PREFIX_MIN_CHARS = 1024 * 4


def keyed(to_chat: Callable[[dict, Exchange], dict]) -> Callable[[dict, Exchange], dict]:
    """An endpoint's `to_chat` that also says which conversation the request continues."""

    def translate(body: dict, ex: Exchange) -> dict:
        chat = to_chat(body, ex)
        ex.conversation = of(body, chat)
        return chat

    return translate


def of(body: dict, chat: dict) -> Conversation | None:
    """The conversation of a request: `body` the client's, `chat` its translation (the chat form's messages),
    with its shared prefix's digest to compute when asked."""
    found = _of(body, chat)
    if found is not None and (chat.get("tools") or _leads_with_system(chat.get("messages"))):
        found.prefix = lambda: prefix(chat)
    return found


def _of(body: dict, chat: dict) -> Conversation | None:
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


def _leads_with_system(messages: object) -> bool:
    return isinstance(messages, list) and bool(messages) and isinstance(messages[0], dict) and \
        messages[0].get("role") in _OPENING_ROLES


def prefix(chat: dict) -> str | None:
    """The digest of the prefix a request shares with other conversations: its model, tools and leading system
    (and developer) messages as text; None when under what Qwen caches (PREFIX_MIN_CHARS)."""
    tools = chat.get("tools")
    encoded = jsonio.dumps(tools) if tools else b""
    h = hashlib.sha256(b"prefix\0" + str(chat.get("model") or "").encode() + b"\0" + encoded)
    chars = len(encoded)
    messages = chat.get("messages")
    for m in messages if isinstance(messages, list) else ():
        if not isinstance(m, dict) or m.get("role") not in _OPENING_ROLES:
            break
        text = _text(m.get("content"))
        chars += len(text)
        h.update(b"\0" + text.encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:32] if chars >= PREFIX_MIN_CHARS else None


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
