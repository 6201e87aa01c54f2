"""Stored responses (`store`, default true): what `previous_response_id`, `GET /responses/{id}` and its
`input_items` read. Model Studio keeps a response id seven days ("the current response id is valid for 7 days",
"OpenAI compatible - Responses"); `store: false` keeps nothing (the probe: its id is then "Not found"). Kept per
Alibaba Cloud account (assumed: the pages do not say whether another key of the account sees them); the clock is
the emulator's (`POST /_emulator/cache {"advance": s}` moves it), so a test never waits a week.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

TTL_S = 7 * 86400
LIMIT = 10_000  # responses kept in all; the oldest go first (the emulator's memory bound, not Model Studio's)


@dataclass
class Stored:
    response: dict  # the Response object as answered
    history: list[dict]  # the chat messages a continuation starts with: context and answer, without instructions
    input_items: list[dict]  # this turn's input items, with ids
    expires: float = 0.0


@dataclass
class ResponseStore:
    lock: threading.Lock = field(default_factory=threading.Lock)
    kept: OrderedDict = field(default_factory=OrderedDict)  # (account, id) -> Stored

    def keep(self, account: str, stored: Stored, now: float) -> None:
        with self.lock:
            stored.expires = now + TTL_S
            self.kept[(account, stored.response["id"])] = stored
            while len(self.kept) > LIMIT:
                self.kept.popitem(last=False)

    def get(self, account: str, rid: object, now: float) -> Stored | None:
        with self.lock:
            stored = self.kept.get((account, rid)) if isinstance(rid, str) else None
            if stored is not None and stored.expires <= now:
                del self.kept[(account, rid)]
                return None
            return stored

    def delete(self, account: str, rid: str, now: float) -> bool:
        found = self.get(account, rid, now) is not None
        if found:
            with self.lock:
                self.kept.pop((account, rid), None)
        return found


def input_items(items) -> list[dict]:
    """The input as `GET …/input_items` lists it: messages with ids (OpenAI's list shape: assumed)."""
    listed = [{"role": "user", "content": [{"type": "input_text", "text": items}]}] if isinstance(items, str) else items
    out = []
    for n, item in enumerate(listed):
        item = dict(item)
        item.setdefault("type", "message")
        if isinstance(item.get("content"), str):
            item["content"] = [{"type": "input_text", "text": item["content"]}]
        item.setdefault("id", f"msg_in_{n}")
        out.append(item)
    return out
