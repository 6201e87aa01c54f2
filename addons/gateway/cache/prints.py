"""A request's prompt prefix as Qwen's cache reads it, one hash a block, in the order a prompt is read:

    model      the model's name
    system     each text part of the leading system (or developer) messages: a string is one part
    tool       each tool definition, in the order sent
    message    each later message (role, text, tool calls and their ids); its images hashed apart too

What Qwen reads is the same whether a message's text comes as a string or as text parts (its chat template
joins them), so a message's text parts count as their joined text; cache markers (`cache_control`,
`prompt_cache_breakpoint`: the client's, or the gateway's own, which moves to the last message every turn) are
no part of the prompt. Each block is hashed from its compact JSON (orjson) with Python's `hash`, keyed per
process: never written anywhere, never a copy of the prompt. Each block's size (the characters of that JSON)
gives the token estimates clients are told. A pass-through body (Anthropic's form, Qwen's own Responses
API's) is read by prints_forms.py into the same blocks.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict

import orjson

from .. import jsonio

MODEL, SYSTEM, TOOL, MESSAGE, MID_SYSTEM = "M", "S", "T", "U", "Y"  # a block's kind, one letter each
SYSTEM_ROLES = ("system", "developer")
MARKERS = frozenset(("cache_control", "prompt_cache_breakpoint"))
IMAGES = frozenset(("image_url", "input_image", "image", "video", "video_url", "input_audio", "document"))
TEXTS = frozenset(("text", "input_text", "output_text"))
# What changes a prompt besides its blocks (thinking, forced tools, the answer's format): compared apart
SETTINGS = ("tool_choice", "enable_thinking", "thinking_budget", "reasoning_effort", "response_format", "thinking",
            "reasoning", "text")
TOOLSETS = 64  # tool lists whose blocks are kept by their whole hash: an agent sends the same tools every turn
MINUTES, HOUR = 300.0, 3600.0  # a cached prefix's lifetimes: Qwen's default, and Qwen4's `ttl: "1h"` (lifetime.py)


class Print:
    """A request's blocks: their kinds (one letter each), their hashes (8 bytes each, compared with memcmp), the
    end of each in characters of JSON, where the messages begin; the hash of its text alone for a message
    holding images; its settings' hash."""

    __slots__ = ("kinds", "raw", "ends", "first_message", "texts", "settings", "lifetime")

    def __init__(self, kinds: str, raw: bytes, ends: array, first_message: int, texts: dict[int, int] | None,
                 settings: int, lifetime: float = MINUTES) -> None:
        self.kinds, self.raw, self.ends, self.first_message = kinds, raw, ends, first_message
        self.texts, self.settings, self.lifetime = texts, settings, lifetime  # lifetime: what its markers asked

    @property
    def blocks(self) -> int:
        return len(self.kinds)

    @property
    def size(self) -> int:
        return self.ends[-1] if self.ends else 0

    def size_before(self, block: int) -> int:
        """The characters of the blocks before `block`."""
        return self.ends[block - 1] if block > 0 else 0

    def footprint(self) -> int:
        """The bytes this print keeps (its buffers and its object), for the memory's bounds."""
        return len(self.raw) + 4 * len(self.ends) + len(self.kinds) + 240


def dumps(obj: object) -> bytes:
    """Compact JSON; what orjson refuses (an integer beyond 64 bits…) by jsonio's fallback."""
    try:
        return orjson.dumps(obj)
    except (TypeError, orjson.JSONEncodeError):
        return jsonio.dumps(obj)


class Blocks:
    """A print being built: each block appended with its kind and JSON."""

    __slots__ = ("kinds", "digests", "ends", "total", "texts", "first_message", "hour")

    def __init__(self, model: object) -> None:
        model_json = dumps(model)
        self.kinds, self.digests, self.ends = [MODEL], [hash(model_json)], [len(model_json)]
        self.total, self.first_message, self.hour = len(model_json), -1, False
        self.texts: dict[int, int] | None = None

    def add(self, kind: str, data: bytes) -> None:
        self.kinds.append(kind)
        self.digests.append(hash(data))
        self.total += len(data)
        self.ends.append(self.total)

    def add_message(self, kind: str, message: dict) -> None:
        if self.first_message < 0:
            self.first_message = len(self.kinds)
        content = message.get("content")
        if (content is None or content.__class__ is str) and "cache_control" not in message:
            self.add(kind, dumps(message))  # most messages: as they are
            return
        text, images = self.canonical(content)
        if "cache_control" in message:
            self.hour |= asks_hour(message)
        out = {k: v for k, v in message.items() if k not in MARKERS}
        out["content"] = text
        data = dumps(out)
        if images:
            if self.texts is None:
                self.texts = {}
            self.texts[len(self.kinds)] = hash(data)
            data += dumps(images)
        self.add(kind, data)

    def add_tools(self, tools: object) -> None:
        if not isinstance(tools, list) or not tools:
            return
        whole = hash(dumps(tools))
        known = _TOOLSETS.get(whole)
        if known is None:
            hour = any(isinstance(t, dict) and asks_hour(t) for t in tools)
            known = _TOOLSETS[whole] = (hour, [(hash(d), len(d)) for d in (dumps(strip(t)) for t in tools)])
            if len(_TOOLSETS) > TOOLSETS:
                _TOOLSETS.popitem(last=False)
        else:
            _TOOLSETS.move_to_end(whole)
        self.hour |= known[0]
        for digest, size in known[1]:
            self.kinds.append(TOOL)
            self.digests.append(digest)
            self.total += size
            self.ends.append(self.total)

    def canonical(self, content: object) -> tuple[object, list | None]:
        """canonical_content, noting a marker that asks Qwen to keep the prefix an hour."""
        if content.__class__ is list and not self.hour:
            self.hour = any(p.__class__ is dict and not MARKERS.isdisjoint(p) and asks_hour(p) for p in content)
        return canonical_content(content)

    def done(self, settings: int) -> Print:
        first = self.first_message if self.first_message >= 0 else len(self.kinds)
        return Print("".join(self.kinds), array("q", self.digests).tobytes(), array("I", self.ends), first,
                     self.texts, settings, HOUR if self.hour else MINUTES)


_TOOLSETS: OrderedDict[int, tuple[bool, list[tuple[int, int]]]] = OrderedDict()  # a tool list's hash -> its blocks


def asks_hour(holder: dict) -> bool:
    """A marker (`cache_control` or `prompt_cache_breakpoint`) on this part, tool or body that asks an hour."""
    return any(isinstance(m := holder.get(k), dict) and m.get("ttl") == "1h" for k in MARKERS)


def strip(part: object) -> object:
    """A part, a tool or a message without its cache markers."""
    if isinstance(part, dict) and not MARKERS.isdisjoint(part):
        return {k: v for k, v in part.items() if k not in MARKERS}
    return part


def canonical_content(content: object) -> tuple[object, list | None]:
    """A message's content as Qwen reads it: its text parts joined (a string and a one-part list are the same),
    other parts without their markers; its images apart (None: none)."""
    if content.__class__ is not list:
        return content, None
    texts: list[str] = []
    images: list | None = None
    other = False
    for p in content:
        kind = p.get("type") if p.__class__ is dict else None
        if kind in TEXTS and p.get("text").__class__ is str:
            texts.append(p["text"])
        elif kind in IMAGES:
            (images := images if images is not None else []).append(strip(p))
        else:
            other = True
    if not other:
        return "".join(texts), images
    parts = []
    for p in content:
        if p.__class__ is dict and p.get("type") in IMAGES:
            continue
        p = strip(p)
        if p.__class__ is dict and p.get("type") == "tool_result":  # Anthropic's: its content is a message's
            p = {**p, "content": canonical_content(p.get("content"))[0]}
        parts.append(p)
    return parts, images


def settings_of(body: dict) -> int:
    return hash(dumps([body.get(k) for k in SETTINGS]))


def of_chat(body: dict) -> Print:
    """The blocks of a chat request (the pivot's form, as it went upstream)."""
    b = Blocks(body.get("model"))
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    lead = 0
    while lead < len(messages) and messages[lead].__class__ is dict and messages[lead].get("role") in SYSTEM_ROLES:
        system_parts(b, messages[lead].get("content"))
        lead += 1
    b.add_tools(body.get("tools"))
    for m in messages[lead:]:
        if m.__class__ is dict:
            b.add_message(MID_SYSTEM if m.get("role") in SYSTEM_ROLES else MESSAGE, m)
    return b.done(settings_of(body))


def system_parts(b: Blocks, content: object) -> None:
    """Each part of a system text its own block (a string is one part)."""
    for part in content if isinstance(content, list) else [content]:
        if isinstance(part, dict) and not MARKERS.isdisjoint(part):
            b.hour |= asks_hour(part)
        text = part.get("text") if isinstance(part, dict) else part
        b.add(SYSTEM, dumps(text if isinstance(text, str) else strip(part)))
