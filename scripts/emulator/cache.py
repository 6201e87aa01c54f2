"""Model Studio's context cache, as a client observes it (its "Context cache" page, help/en/model-studio/
context-cache, read 2026-11-24): per account (here: per credential) and model, never shared.

Explicit cache: `cache_control: {"type": "ephemeral"}` on a message's content part marks where a cached
prefix ends (a marker on a message itself or on a tool is none: the page marks content parts, and "adding a
cache marker in messages also caches the tool descriptions"). At most four take effect: with more, "only the
last four cache markers take effect" (no refusal). From each marker the service looks back up to 20 content
blocks for a stored prefix and reads the longest one found (`cached_tokens`), resetting its validity to five
minutes; a marked prefix not stored yet is stored for five minutes if it holds at least 1,024 tokens, and
only what follows the prefix read is billed as created (`cache_creation_input_tokens`).

Implicit cache: a request without markers reads the longest prefix (at least 256 tokens) that an unmarked
request stored, and stores its own prefixes. The service keeps those "not guaranteed"; the emulator keeps them
five minutes from their last use, so a test can count on them. The two modes never mix in one request.

Session cache (the same page, "Session cache"): Responses API requests with the header
`x-dashscope-session-cache: enable` on the models that offer it. The service keeps the conversation's context, its
answer included; a later turn that continues it (`previous_response_id`, which the page says it "must be used
with") reads it: at least 1,024 tokens, five minutes reset on each hit, what follows billed as created, as for the
explicit cache. While it is on, neither other mode applies. The emulator reads it only for a turn that continues
a response (a client resending the whole history reads nothing: the assumption that keeps a gateway honest).

A prefix is the request's text up to the end of a content block: its role, text, tool calls and tool call
ids, the model and the tools (without their markers) before it, so a system prompt sent as a string or as
text parts is the same prefix. The tools sit where Qwen's chat template renders them (Qwen3's
tokenizer_config.json: the leading system message's text, then `# Tools` with each tool): after the leading
system message, before the first other message, so a prefix that ends in the system text holds no tool and
tools listed in another order leave it readable. The tools count as prompt tokens, as their text does. The clock is the emulator's own: tests move it (`/_emulator/cache`).

Qwen4's explicit cache ("Explicit cache (Qwen4)", 2026-11-16; the catalogue's `cache_ttls`): a marker's
`ttl: "1h"` stores its prefix for an hour, and a hit renews the prefix with the lifetime of the marker that
read it; on the other models a ttl changes nothing (five minutes, as their page says).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from .catalogue import MODELS

LIMIT = 8192  # stored prefixes per mode; the least recently used go first
TTL_S = 300.0
LIFETIMES_S = {"5m": TTL_S, "1h": 3600.0}  # a Qwen4 marker's ttl (the catalogue's cache_ttls)
EXPLICIT_MIN, IMPLICIT_MIN = 1024, 256  # tokens a stored prefix holds at least
SESSION_MIN = 1024
MARKERS = 4  # markers that take effect (the last ones)
LOOKBACK = 20  # content blocks a marker looks back for a stored prefix


def tokens(text: str) -> int:
    """The emulator's token count (no real tokenizer): a quarter of the characters."""
    return len(text) // 4 + 1


def text_of(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def tools_text(body: dict) -> str:
    """The tools as the prompt holds them (their markers left out): they count as prompt and cache like text."""
    tools = [{k: v for k, v in t.items() if k != "cache_control"} for t in body.get("tools") or []
             if isinstance(t, dict)]
    return json.dumps(tools, sort_keys=True, ensure_ascii=False) if tools else ""


def marked(message: dict) -> bool:
    """A message with a marker on one of its content parts."""
    content = message.get("content")
    return isinstance(content, list) and any(isinstance(p, dict) and isinstance(p.get("cache_control"), dict)
                                             for p in content)


@dataclass(frozen=True)
class Served:
    cached: int = 0  # prompt tokens read from the cache
    created: int = 0  # prompt tokens stored now (explicit only)
    explicit: bool = False  # the request carried markers: explicit mode
    created_hour: int = 0  # of `created`, what was stored for an hour (Qwen4's ttl "1h")


@dataclass(frozen=True)
class _Block:
    key: bytes  # the prefix that ends with this block
    tokens: int
    marked: bool
    ttl_s: float = TTL_S  # how long a marked block's prefix is kept


def lifetime_s(model: object, marker: object) -> float:
    """How long a marker keeps its prefix: its ttl on a model whose row lists it, else five minutes."""
    ttl = marker.get("ttl") if isinstance(marker, dict) else None
    row = MODELS.get(model) if isinstance(model, str) else None
    return LIFETIMES_S.get(ttl, TTL_S) if row is not None and ttl in row.get("cache_ttls", ()) else TTL_S


def _blocks(owner: str, body: dict) -> list[_Block]:
    tools = tools_text(body)
    h = hashlib.sha256(json.dumps([owner, body.get("model")]).encode())
    text, out = "", []
    tools_at = 1 if body["messages"] and body["messages"][0].get("role") == "system" else 0
    for i, m in enumerate(body["messages"]):
        if i == tools_at:
            # Qwen's chat template renders the tools after the leading system message's text (before the
            # first message when there is none): a prefix that ends in the system text holds no tool
            h.update(b"\x01" + tools.encode("utf-8", "surrogatepass"))
            text += tools
        h.update(json.dumps(["\x00", m.get("role"), m.get("tool_call_id")]).encode())
        content = m.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else \
            [p for p in content if isinstance(p, dict)] if isinstance(content, list) else []
        for p in parts:
            piece = p.get("text") or "" if p.get("type") == "text" else ""
            h.update(piece.encode("utf-8", "surrogatepass") if piece else
                     json.dumps({k: v for k, v in p.items() if k != "cache_control"}, sort_keys=True).encode())
            text += piece
            marker = p.get("cache_control")
            out.append(_Block(h.copy().digest(), tokens(text), isinstance(marker, dict),
                              lifetime_s(body.get("model"), marker)))
        if m.get("tool_calls"):
            h.update(json.dumps(m["tool_calls"], sort_keys=True).encode())
            out.append(_Block(h.copy().digest(), tokens(text), False))
    return out


class PromptCache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.explicit: OrderedDict[bytes, tuple[int, float]] = OrderedDict()  # prefix -> (tokens, expires)
        self.implicit: OrderedDict[bytes, tuple[int, float]] = OrderedDict()
        self.session: OrderedDict[bytes, tuple[int, float]] = OrderedDict()
        self.offset = 0.0  # moved forward by tests

    def now(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.offset += seconds

    def counts(self) -> dict:
        now = self.now()
        with self.lock:
            return {mode: sum(1 for _, until in store.values() if until > now)
                    for mode, store in (("explicit", self.explicit), ("implicit", self.implicit),
                                        ("session", self.session))}

    def serve(self, owner: str, body: dict) -> Served:
        """What this request reads from and stores in `owner`'s cache."""
        blocks = _blocks(owner, body)
        marks = [i for i, b in enumerate(blocks) if b.marked][-MARKERS:]
        now = self.now()
        with self.lock:
            if not marks:
                return Served(self._implicit(blocks, now))
            store = self.explicit
            hit: tuple[int, bytes, float] | None = None
            for at in marks:
                for j in range(at, max(-1, at - LOOKBACK - 1), -1):  # the nearest stored is the longest
                    if self._valid(store, blocks[j].key, now):
                        if hit is None or blocks[j].tokens > hit[0]:
                            hit = (blocks[j].tokens, blocks[j].key, blocks[at].ttl_s)  # renewed with this lifetime
                        break
            cached = 0
            if hit is not None:
                cached = hit[0]
                self._keep(store, hit[1], cached, now, hit[2])
            end, hour = cached, 0
            for at in marks:
                b = blocks[at]
                if b.tokens >= EXPLICIT_MIN and not self._valid(store, b.key, now):
                    self._keep(store, b.key, b.tokens, now, b.ttl_s)
                    if b.tokens > end:
                        hour += (b.tokens - end) if b.ttl_s > TTL_S else 0
                        end = b.tokens
            return Served(cached, end - cached, True, hour)

    def read_session(self, owner: str, body: dict, continued: bool) -> Served:
        """What a session-cached turn reads (only when it `continued` a stored response) and creates."""
        blocks = _blocks(owner, body)
        prompt = blocks[-1].tokens if blocks else 0
        now = self.now()
        with self.lock:
            hit = next((b for b in reversed(blocks) if self._valid(self.session, b.key, now)), None) if continued else None
            cached = hit.tokens if hit else 0
            if hit:
                self._keep(self.session, hit.key, cached, now)
        return Served(cached, prompt - cached if prompt >= SESSION_MIN else 0, True)

    def keep_session(self, owner: str, body: dict) -> None:
        """Stores a session-cached turn's context with its answer (`body`'s messages end with it)."""
        blocks = _blocks(owner, body)
        if blocks and blocks[-1].tokens >= SESSION_MIN:
            with self.lock:
                self._keep(self.session, blocks[-1].key, blocks[-1].tokens, self.now())

    def _implicit(self, blocks: list[_Block], now: float) -> int:
        store = self.implicit
        cached = next((b.tokens for b in reversed(blocks) if self._valid(store, b.key, now)), 0)
        for b in blocks:
            if b.tokens >= IMPLICIT_MIN:
                self._keep(store, b.key, b.tokens, now)
        return cached

    @staticmethod
    def _valid(store: OrderedDict, key: bytes, now: float) -> bool:
        entry = store.get(key)
        if entry is None:
            return False
        if entry[1] <= now:
            del store[key]
            return False
        return True

    @staticmethod
    def _keep(store: OrderedDict, key: bytes, n: int, now: float, ttl_s: float = TTL_S) -> None:
        store[key] = (n, now + ttl_s)
        store.move_to_end(key)
        while len(store) > LIMIT:
            store.popitem(last=False)
