"""DashScope's explicit prompt cache, as far as a client can observe it.

A request whose messages carry `cache_control: {"type": "ephemeral"}` stores the prompt prefix that ends at
each marked message. A later request (same credential, model and tools) whose messages start with a
stored prefix reports that prefix's tokens as `prompt_tokens_details.cached_tokens`. Without markers
nothing is stored, so a client that never marks its prompts never sees cached tokens.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict

LIMIT = 4096  # stored prefixes; the oldest go first


def tokens(text: str) -> int:
    """The emulator's token count (no real tokenizer): a quarter of the characters."""
    return len(text) // 4 + 1


def text_of(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def marked(message: dict) -> bool:
    if isinstance(message.get("cache_control"), dict):
        return True
    content = message.get("content")
    return isinstance(content, list) and any(isinstance(p, dict) and isinstance(p.get("cache_control"), dict)
                                             for p in content)


def _canonical(message: dict) -> bytes:
    """A message without its cache markers: a system prompt as a string or as marked parts is the same prefix."""
    return json.dumps([message.get("role"), text_of(message.get("content")), message.get("tool_calls"),
                       message.get("tool_call_id")], sort_keys=True, ensure_ascii=False).encode()


class PromptCache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: OrderedDict[bytes, int] = OrderedDict()

    def serve(self, owner: str, body: dict) -> int:
        """Cached tokens for this request's prompt; stores its marked prefixes for later requests."""
        tools = [{k: v for k, v in t.items() if k != "cache_control"} for t in body.get("tools") or []
                 if isinstance(t, dict)]
        h = hashlib.sha256(json.dumps([owner, body.get("model"), tools], sort_keys=True).encode()).digest()
        text = ""
        prefixes: list[tuple[bytes, int, bool]] = []
        for m in body["messages"]:
            h = hashlib.sha256(h + _canonical(m)).digest()
            text += text_of(m.get("content"))
            prefixes.append((h, tokens(text), marked(m)))
        with self.lock:
            cached = max((n for key, n, _ in prefixes if key in self.entries), default=0)
            for key, n, mark in prefixes:
                if mark:
                    self.entries[key] = n
                    self.entries.move_to_end(key)
            while len(self.entries) > LIMIT:
                self.entries.popitem(last=False)
        return cached
