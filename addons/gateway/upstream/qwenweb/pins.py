"""Pinned multi-turn for web accounts (qwen-web-protocol.md §1.8 strategy 2): a conversation keeps its Qwen Chat
chat, and a later turn sends only its new messages with `parent_id` = the chat's last response.

A pin is keyed by (account, the client's `user` field, model) and remembers the chat, its last
response id and a digest of the transcript sent so far (tools and messages). A request continues the pin only
when that transcript is a prefix of its messages, followed by the assistant's answer and then new user or tool
messages; anything else (an edited history, other tools) starts a new chat. Pins live in SQLite under the state
folder, 0600, with a TTL; no message text is stored, only digests. Pure functions and the store, no network.
A pin the folder cannot take (full, read-only: storage/health.py) is not kept: the next turn starts a new chat."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ...storage.health import local_failure
from ...storage.sqlite import open_private_db

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pins (key TEXT PRIMARY KEY, chat_id TEXT, response_id TEXT, digest TEXT,
    count INTEGER, expires REAL);
"""
NEW_ROLES = ("user", "tool", "function")  # what a follow-up turn may carry after the assistant's answer


@dataclass(frozen=True)
class Pin:
    chat_id: str
    response_id: str  # the chat's last response: the next turn's parent_id
    digest: str  # of the transcript the chat holds (transcript_digest over `count` messages)
    count: int
    expires: float  # time.time() after which the pin is forgotten


def pin_key(account: str, session: str, model: str) -> str:
    """The store's key: a digest, so the file holds no user names."""
    return hashlib.sha256(json.dumps([account, session, model]).encode()).hexdigest()


def transcript_digest(chat: dict, count: int) -> str:
    """The first `count` messages with the tools offered (a change of tools changes the chat's first message)."""
    messages = [m for m in chat.get("messages") or [] if isinstance(m, dict)][:count]
    seen = {"tools": chat.get("tools") or [], "tool_choice": chat.get("tool_choice"), "messages": messages}
    return hashlib.sha256(json.dumps(seen, sort_keys=True, default=str).encode()).hexdigest()


def follow_up(chat: dict, pin: Pin) -> list[dict] | None:
    """The messages a pinned turn sends (after the pinned transcript and the assistant's answer), or None when
    the request does not continue the pin."""
    messages = [m for m in chat.get("messages") or [] if isinstance(m, dict)]
    if len(messages) < pin.count + 2 or transcript_digest(chat, pin.count) != pin.digest:
        return None
    if messages[pin.count].get("role") != "assistant":
        return None
    new = messages[pin.count + 1:]
    return new if all(m.get("role") in NEW_ROLES for m in new) else None


class PinStore:
    """Pins in SQLite (one connection, WAL). Each turn reads and writes one small row; the event loop does it
    inline, as the ledger and the response store do."""

    def __init__(self, path: Path, ttl: float) -> None:
        self.ttl = ttl
        self.path = path
        self._lock = threading.Lock()
        self._db = open_private_db(path, timeout=5, setup=_SCHEMA)

    def _change(self, *statements: tuple[str, tuple]) -> None:
        """Write statements (the caller holds the lock); a full or read-only folder drops them (said once)."""
        try:
            for sql, args in statements:
                self._db.execute(sql, args)
        except Exception as e:
            if local_failure(self.path.parent, e) is None:
                raise

    def get(self, key: str, now: float | None = None) -> Pin | None:
        now = time.time() if now is None else now
        with self._lock:
            row = self._db.execute("SELECT chat_id, response_id, digest, count, expires FROM pins WHERE key=?",
                                   (key,)).fetchone()
            if row is None:
                return None
            if row[4] <= now:
                self._change(("DELETE FROM pins WHERE key=?", (key,)))
                return None
        return Pin(*row)

    def put(self, key: str, chat_id: str, response_id: str, digest: str, count: int,
            now: float | None = None) -> Pin:
        pin = Pin(chat_id, response_id, digest, count, (time.time() if now is None else now) + self.ttl)
        with self._lock:
            self._change(("INSERT OR REPLACE INTO pins VALUES (?,?,?,?,?,?)",
                          (key, pin.chat_id, pin.response_id, pin.digest, pin.count, pin.expires)),
                         ("DELETE FROM pins WHERE expires <= ?", (time.time() if now is None else now,)))
        return pin

    def drop(self, key: str) -> None:
        with self._lock:
            self._change(("DELETE FROM pins WHERE key=?", (key,)))

    def close(self) -> None:
        self._db.close()
