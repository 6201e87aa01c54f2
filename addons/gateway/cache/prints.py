"""A request's prompt prefix as Qwen's cache reads it, one hash a block, in the order a prompt is read:

    model      the model's name
    system     each text part of the leading system (or developer) messages: a string is one part
    tool       each tool definition, in the order sent
    message    each later message (role, text, tool calls and their ids); its images hashed apart too

What Qwen reads is the same whether a message's text comes as a string or as text parts (its chat template
joins them), so a message's text parts count as their joined text; cache markers (`cache_control`,
`prompt_cache_breakpoint`: the client's, or the gateway's own, which moves to the last message every turn) are
no part of the prompt. Each block is hashed from its compact JSON (orjson) with xxh3 (checksum.py): the same in
every process, so gateways of one team compare each other's turns (shared.py); a hash, never a copy of the
prompt. Each block's size (bytes of JSON) gives the token
estimates clients are told. A chat body is read by prints_chat.py, and also keeps what lets the next turn of its
conversation skip the part it repeats (`Reuse`, prints_sent.py); a pass-through body (Anthropic's form, Qwen's own
Responses API's) is read by prints_forms.py into the same blocks.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from itertools import chain
from sys import byteorder
from typing import NamedTuple

import orjson

from .. import jsonio
from .checksum import checksum
from .parts import MARKERS, TEXTS, asks_hour, canonical_content, strip

MODEL, SYSTEM, TOOL, MESSAGE, MID_SYSTEM = "M", "S", "T", "U", "Y"  # a block's kind, one letter each
SYSTEM_ROLES = ("system", "developer")
# What changes a prompt besides its blocks (thinking, forced tools, the answer's format): compared apart
SETTINGS = ("tool_choice", "enable_thinking", "thinking_budget", "reasoning_effort", "response_format", "thinking",
            "reasoning", "text")
TOOLSETS = 64  # tool lists whose blocks are kept by their JSON's checksum: an agent sends the same tools every turn
SLICE = 256  # messages encoded in one call: one over 10,000 held the interpreter for 250 ms (`encoded`)
MESSAGES_KEY = b'"messages":['  # as orjson writes it: a quote inside a string is escaped
TOOLS_KEY = b'"tools":['  # as MESSAGES_KEY
MINUTES, HOUR = 300.0, 3600.0  # a cached prefix's lifetimes: Qwen's default, and Qwen4's `ttl: "1h"`


class Reuse(NamedTuple):
    """What the next turn of a chat conversation checks to take this turn's blocks instead of making them again:
    the JSON of all its messages but the last (the one the gateway's marker moves from) and of its tools, each
    as a length and a checksum (checksum.py), with how many blocks each made. A tuple, made each turn by
    `tuple.__new__(Reuse, (…))`: a class's __init__, or this one's own __new__, cost twice the instructions."""

    messages: int
    lead: int
    head_len: int
    head_sum: int
    head_hour: bool
    tools_len: int
    tools_sum: int
    tools_hour: bool
    system_blocks: int
    tool_blocks: int
    # the last message as the next turn sends it, its marker gone (its JSON's length; 0: not foreseen), and the
    # checksum of the head grown by it: where the next turn's bytes match, that message is not read again
    last_len: int = 0
    next_sum: int = 0


class Print:
    """A request's blocks: their kinds (one letter each), their hashes (8 bytes each, compared with memcmp), the
    size of each in bytes of JSON, where the messages begin; the hash of its text alone for a message holding
    images; its settings' hash (0: not read); the lifetime its markers asked; what the next turn may reuse."""

    __slots__ = ("kinds", "raw", "sizes", "first_message", "texts", "settings", "lifetime", "reuse", "marks", "spans",
                 "footprint")

    def __init__(self, kinds: str, raw: bytes, sizes: array, first_message: int, texts: dict[int, int] | None,
                 settings: int = 0, lifetime: float = MINUTES, reuse: Reuse | None = None,
                 marks: tuple[int, ...] = (), spans: dict[int, int] | None = None) -> None:
        self.kinds = kinds  # each its own statement: a tuple of several built and unpacked costs more
        self.raw = raw
        self.sizes = sizes
        self.first_message = first_message
        self.texts = texts
        self.settings = settings
        self.lifetime = lifetime
        self.reuse = reuse
        self.spans = spans
        self.marks = marks  # the blocks a cache marker ends (a system part, a message): where Qwen stores a prefix
        # spans: a message block of other than one content part, its parts (what Qwen's lookback counts)
        # the bytes it keeps (its buffers and its objects), for the memory's bounds: read there without a call
        self.footprint = 13 * len(kinds) + 360  # a block's hash (8 bytes), size (4) and kind (1); its objects

    @property
    def blocks(self) -> int:
        return len(self.kinds)

    @property
    def size(self) -> int:
        return sum(self.sizes)

    def size_before(self, block: int) -> int:
        """The bytes of the blocks before `block`."""
        return sum(self.sizes[:block])


def dumps(obj: object) -> bytes:
    """Compact JSON; what orjson refuses (an integer beyond 64 bits…) by jsonio's fallback."""
    try:
        return orjson.dumps(obj)
    except (TypeError, orjson.JSONEncodeError):
        return jsonio.dumps(obj)


class Blocks:
    """A print being built: its blocks' kinds, hashes and sizes, appended in order."""

    __slots__ = ("kinds", "digests", "sizes", "texts", "first_message", "hour", "whole_tools", "tools_sum",
                 "tools_hour", "hour_blocks", "marks", "spans", "canon", "last_json")

    def __init__(self, model: object, empty: bool = False) -> None:
        model_json, digest, _ = model_block(model) if not empty else (b"", 0, b"")
        # arrays: a long conversation's hashes kept as no Python int each, whose scattered heap is not given back
        self.kinds, self.digests, self.sizes = ([MODEL], array("Q", [digest]), array("I", [len(model_json)])) \
            if not empty else ([], array("Q"), array("I"))  # empty: blocks that follow others (prints_sent.py)
        self.first_message, self.hour, self.whole_tools, self.tools_hour = -1, False, b"", False
        self.tools_sum = 0  # the checksum of whole_tools, once made
        self.texts: dict[int, int] | None = None
        self.hour_blocks: list[int] = []  # the message blocks whose markers ask an hour
        self.marks: list[int] = []  # the blocks a marker ends (Print.marks)
        self.spans: dict[int, int] | None = None  # Print.spans
        self.canon = self.last_json = b""  # the latest message read as Qwen reads it; the last's JSON (Reuse.last_len)

    def add(self, kind: str, data: bytes) -> None:
        self.kinds.append(kind)
        self.digests.append(checksum(data))
        self.sizes.append(len(data))

    def add_messages(self, messages: list, datas: list[bytes] | None = None) -> list[bytes]:
        """Each message a block: encoded and hashed in C (map), then the few that need more — text in parts (a
        marker sits on a part), a system role mid-conversation — read again. Returns each message's JSON as sent
        (`datas`: already encoded)."""
        if datas is None:
            datas = encoded(messages)
        hashed = list(datas)
        first = self.first_message = len(self.kinds)
        kinds = [MESSAGE] * len(datas)
        for i in [i for i, m in enumerate(messages) if m.__class__ is dict and (
                m.get("content").__class__ is list or "cache_control" in m or m.get("role") in SYSTEM_ROLES)]:
            m = messages[i]
            if m.get("role") in SYSTEM_ROLES:
                kinds[i] = MID_SYSTEM
            if m.get("content").__class__ is list or "cache_control" in m:
                hashed[i] = self.canonical_message(first + i, m)
        self.kinds += kinds
        self.digests.extend(map(checksum, hashed))
        self.sizes.extend(map(len, datas))
        if datas:  # plain, or read as Qwen reads it to one text: its JSON once its marker moves on
            self.last_json = hashed[-1] if hashed[-1] is datas[-1] else self.canon
        return datas

    def canonical_message(self, index: int, message: dict) -> bytes:
        """A message whose text comes in parts, or that carries a marker: as Qwen reads it (see the module)."""
        content = message.get("content")
        marked = "cache_control" in message
        if not marked and content.__class__ is list:
            for p in content:  # no call made: the doctor's cost is counted in calls (test_cache_doctor_cost.py)
                if p.__class__ is dict and ("cache_control" in p or "prompt_cache_breakpoint" in p):
                    marked = True
                    break
        if marked:
            self.marks += (index,)
        if content.__class__ is list and len(content) == 1 and (part := content[0]).__class__ is dict \
                and part.get("type") in TEXTS and (text := part.get("text")).__class__ is str:
            # one text part (the gateway's marker moves to the last message in this form): its text, no images
            if asks_hour(part) or ("cache_control" in message and asks_hour(message)):
                self.hour = True
                self.hour_blocks.append(index)
            images = None
        else:
            if content.__class__ is list and len(content) != 1:
                self.spans = self.spans if self.spans is not None else {}
                self.spans[index] = sum(1 for p in content if p.__class__ is dict)
            if ("cache_control" in message and asks_hour(message)) or (content.__class__ is list and any(
                    p.__class__ is dict and not MARKERS.isdisjoint(p) and asks_hour(p) for p in content)):
                self.hour = True
                self.hour_blocks.append(index)
            text, images = canonical_content(content)
        # in their order: a string's hash the same; no marker on the message, commonly: copied in one step
        out = {**message, "content": text} if "cache_control" not in message and "prompt_cache_breakpoint" not in \
            message else {k: text if k == "content" else v for k, v in message.items() if k not in MARKERS}
        try:  # orjson itself: through dumps, one Python call more on every turn's last message
            data = orjson.dumps(out)
        except (TypeError, orjson.JSONEncodeError):
            data = dumps(out)
        self.canon = data if not images and text.__class__ is not list else b""
        if images:
            self.texts = self.texts if self.texts is not None else {}
            self.texts[index] = checksum(data)
            data += dumps(images)
        return data

    def add_tools(self, tools: object, known: tuple | None = None) -> None:
        """Each tool a block; `known`: their blocks as a turn before made them (of_chat's `tools`)."""
        if not isinstance(tools, list) or not tools:
            return
        if known is None:
            self.whole_tools = whole = dumps(tools)
            self.tools_sum = checksum(whole)
            known = SEEN_TOOLS.get(key := (len(whole), self.tools_sum))
            if known is None:
                hour = any(isinstance(t, dict) and asks_hour(t) for t in tools)
                datas = [dumps(strip(t)) for t in tools]
                known = SEEN_TOOLS[key] = (hour, array("Q", map(checksum, datas)).tobytes(), array("I", map(len, datas)))
                if len(SEEN_TOOLS) > TOOLSETS:
                    SEEN_TOOLS.popitem(last=False)
            else:  # moved to the end; a worker thread (diagnosis.py) may have dropped it meanwhile
                SEEN_TOOLS[key] = SEEN_TOOLS.pop(key, known)
        self.hour |= known[0]
        self.tools_hour = known[0]
        self.kinds += TOOL * len(known[2])  # one letter each
        self.digests.frombytes(known[1])
        self.sizes += known[2]

    def done(self, settings: int = 0, reuse: Reuse | None = None) -> Print:
        first = self.first_message if self.first_message >= 0 else len(self.kinds)
        return Print("".join(self.kinds), self.digests.tobytes(), self.sizes, first,
                     self.texts, settings, HOUR if self.hour else MINUTES, reuse, tuple(self.marks), self.spans)


# a tool list's JSON (its length, its checksum) -> whether its markers ask an hour, and its blocks: their hashes (8
# bytes each, as Print.raw) and sizes, appended at once
SEEN_TOOLS: OrderedDict[tuple[int, int], tuple[bool, bytes, array]] = OrderedDict()


def encoded(messages: list) -> list[bytes]:
    try:  # SLICE at a time: between slices a worker thread printing a long prompt (diagnosis.py) lets the loop run
        if len(messages) <= SLICE:
            return list(map(orjson.dumps, messages))
        # each copied out of orjson's buffer (4 kB, however short its JSON): 200,000 short messages held 800 MB
        return list(chain.from_iterable(map(bytes, map(memoryview, map(orjson.dumps, messages[i:i + SLICE])))  # type: ignore[arg-type]
                                        for i in range(0, len(messages), SLICE)))
    except (TypeError, orjson.JSONEncodeError):
        return [dumps(m) for m in messages]


def settings_of(body: dict) -> int:
    """The hash of SETTINGS' values, each named (a map over SETTINGS cost twice the instructions)."""
    g = body.get
    try:  # orjson itself: through dumps, one Python call more on every turn
        return checksum(orjson.dumps([g("tool_choice"), g("enable_thinking"), g("thinking_budget"),
                                      g("reasoning_effort"), g("response_format"), g("thinking"), g("reasoning"),
                                      g("text")]))
    except (TypeError, orjson.JSONEncodeError):
        return checksum(dumps([body.get(k) for k in SETTINGS]))


def model_block(model: object) -> tuple[bytes, int, bytes]:
    """A model's name as a block: its JSON, that JSON's checksum and the checksum's 8 bytes (as Print.raw holds
    it), kept for the few names a gateway serves."""
    known = MODELS.get(model) if model.__class__ is str else None
    if known is None:
        data = dumps(model)
        digest = checksum(data)
        known = data, digest, digest.to_bytes(8, byteorder)
        if model.__class__ is str:
            if len(MODELS) >= TOOLSETS:
                MODELS.clear()
            MODELS[model] = known
    return known


MODELS: dict[object, tuple[bytes, int, bytes]] = {}  # a model's name -> its block (`model_block`)
