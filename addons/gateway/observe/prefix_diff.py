"""The cache doctor's analysis (pure): a chat request's prompt prefix as fingerprints of its blocks, and why a
turn of a conversation read less of Qwen's prompt cache than the turn before it.

Qwen's cache (implicit or explicit) holds prefixes of a prompt: the model, the system text, the tools, then the
messages, each up to the end of a content block. A turn reads what an earlier turn of the same account stored
within five minutes, up to the first byte that differs. So a chat request (the pivot, as it went upstream) is
read as blocks in that order:

    model                  the model's name
    system                 each text part of the leading system / developer messages
    tool                   each tool definition, in the order sent
    message                each later message (role, text, tool calls, ids); its images hashed apart

Each block is kept as a 64-bit hash (Python's `hash`, keyed per process: never written anywhere, never a copy of
the prompt); a turn keeps an array of them. `first_change` finds the first block that differs from an earlier
turn and says what kind of change it was (`CAUSES`); `diagnose` decides whether the turn missed more than that
turn and why.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import jsonio

TTL_S = 300.0  # Model Studio's prompt cache keeps a prefix five minutes from its last use ("Context cache" page)
# Why a turn missed, in the order a prefix is read; then what is no change of the prefix.
CAUSES = {
    "model": "the model changed",
    "system": "the system text changed",
    "tool_order": "the tools were reordered",
    "tool": "a tool definition changed",
    "edited": "an earlier message was edited",
    "mid_system": "a system message mid-conversation",
    "image": "an image changed",
    "account": "another account (its cache is its own)",
    "expiry": "over 5 minutes since the turn before",
    "unexplained": "no change found in the prefix",
}
MODEL, SYSTEM, TOOL, MESSAGE, MID_SYSTEM = "M", "S", "T", "U", "Y"  # a block's kind, one letter each
_SYSTEM_ROLES = ("system", "developer")
_IMAGES = ("image_url", "input_image", "image", "video", "video_url", "input_audio")


@dataclass(slots=True)
class Prefix:
    """A request's blocks: their kinds (one letter each) and hashes (where each is: `places`)."""

    kinds: str
    digests: array  # array("q"): one hash per block
    texts: dict[int, int]  # block index -> the hash of its text alone (only blocks holding an image)
    raw: bytes = b""  # the hashes' bytes (8 a block): prefixes compared with memcmp

    def __post_init__(self) -> None:
        self.raw = self.digests.tobytes()


@dataclass(slots=True)
class Seen:
    """One turn as the doctor keeps it: no prompt text, its prefix's hashes and Qwen's usage."""

    turn: int
    at: float  # epoch seconds
    account: str
    prompt: int
    cached: int
    prefix: Prefix


@dataclass(slots=True)
class Change:
    cause: str  # a key of CAUSES
    index: int  # the first block that differs
    where: str  # its place in this request ("tools[2] Bash"), when the request was given
    was: int | None  # the earlier turn's hash there (None: it had no such block)
    now: int | None


@dataclass(slots=True)
class Verdict:
    turn: int
    against: int | None  # the earlier turn compared with
    missed: int  # prompt tokens not read from the cache
    lost: int  # of them, those the earlier turn's cache should have served (0: no miss)
    cause: str | None  # why (a key of CAUSES), None when the turn missed no more than the earlier one
    change: Change | None  # the prefix's first difference, when there is one


def _h(text: str) -> int:
    return hash(text)


# One encoder, made once (jsonio.Encoder: JSONEncoder.encode builds its C encoder again at each call). Keys in
# the order sent: what Qwen reads is the bytes, so keys reordered are a change of the prefix too.
_ENCODE = jsonio.Encoder(ensure_ascii=False, default=str)


def _dump(obj: object) -> int:
    return hash(_ENCODE(obj))


def fingerprint(body: dict) -> Prefix:
    """The blocks of a chat request (the pivot's form; `cache_control` markers are no part of the prefix)."""
    kinds, digests = [MODEL], [_h(str(body.get("model")))]
    texts: dict[int, int] = {}
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    lead = 0
    while lead < len(messages) and isinstance(messages[lead], dict) and messages[lead].get("role") in _SYSTEM_ROLES:
        content = messages[lead].get("content")
        parts = content if isinstance(content, list) else [content]
        for part in parts:
            text = part.get("text") if isinstance(part, dict) else part
            kinds.append(SYSTEM)
            digests.append(_h(text) if isinstance(text, str) else _dump(
                {k: v for k, v in part.items() if k != "cache_control"} if isinstance(part, dict) else part))
        lead += 1
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else []:
        kinds.append(TOOL)
        digests.append(_dump({k: v for k, v in tool.items() if k != "cache_control"} if isinstance(tool, dict) else tool))
    for m in messages[lead:]:
        if m.__class__ is not dict:
            continue
        kinds.append(MID_SYSTEM if m.get("role") in _SYSTEM_ROLES else MESSAGE)
        content = m.get("content")
        if (content is None or content.__class__ is str) and "tool_calls" not in m:
            try:  # most messages: strings only, hashed as one tuple in C
                digests.append(hash(tuple(m.items())))
                continue
            except TypeError:
                pass
        text, image = _message(m)
        digests.append(hash((text, image)) if image else text)
        if image:
            texts[len(kinds) - 1] = text
    return Prefix("".join(kinds), array("q", digests), texts)


def places(body: dict) -> list[str]:
    """Where each block of `fingerprint(body)` is in the request ("model", "messages[0].content[1]",
    "tools[3] Bash", "messages[7] user"): named only when a change is shown, never kept."""
    out = ["model"]
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    lead = 0
    while lead < len(messages) and isinstance(messages[lead], dict) and messages[lead].get("role") in _SYSTEM_ROLES:
        content = messages[lead].get("content")
        out += [f"messages[{lead}].content[{j}]" for j in range(len(content))] if isinstance(content, list) \
            else [f"messages[{lead}]"]
        lead += 1
    tools = body.get("tools")
    for i, tool in enumerate(tools if isinstance(tools, list) else []):
        fn = tool.get("function") if isinstance(tool, dict) else None
        name = fn.get("name") if isinstance(fn, dict) else None
        out.append(f"tools[{i}] {name}" if isinstance(name, str) else f"tools[{i}]")
    out += [f"messages[{i}] {messages[i].get('role')}" for i in range(lead, len(messages))
            if isinstance(messages[i], dict)]
    return out


def _message(m: dict) -> tuple[int, int]:
    """A message's hash without its images, and its images' (0: none). Strings go into the hashed tuple as they
    are (a string's hash is computed once, in C); JSON only for shapes that are neither text nor a tool call."""
    content = m.get("content")
    image = 0
    if content.__class__ is not list:
        body: object = content if content is None or content.__class__ is str else _dump(content)
    else:
        pieces: list[object] = []
        images: list[int] = []
        for p in content:
            if p.__class__ is not dict:
                pieces.append(_dump(p))
            elif p.get("type") in _IMAGES:
                images.append(_dump({k: v for k, v in p.items() if k != "cache_control"}))
            else:
                text = p.get("text")
                pieces.append(text if text.__class__ is str else _dump({k: v for k, v in p.items()
                                                                         if k != "cache_control"}))
        body = tuple(pieces)
        image = hash(tuple(images)) if images else 0
    calls = m.get("tool_calls")
    reasoning = m.get("reasoning_content")
    return hash((m.get("role"), m.get("tool_call_id"), m.get("name"), body, _calls(calls) if calls else None,
                 reasoning if reasoning is None or reasoning.__class__ is str else _dump(reasoning))), image


def _calls(calls: Any) -> object:
    """Tool calls as their ids, names and argument strings; JSON for any other shape."""
    try:
        return tuple([(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in calls])
    except (KeyError, TypeError):
        return _dump(calls)


def common(a: Prefix, b: Prefix) -> int:
    """How many leading blocks two prefixes share: their bytes compared in halves (memcmp, no Python int a block)."""
    x, y = a.raw, b.raw
    n = min(len(x), len(y))
    if x[:n] == y[:n]:
        return n // 8
    lo, hi = 0, n // 8  # blocks before lo are equal; one in [lo, hi) differs
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if x[lo * 8:mid * 8] == y[lo * 8:mid * 8]:
            lo = mid
        else:
            hi = mid
    return lo


def first_change(was: Prefix, now: Prefix, body: dict | None = None) -> Change | None:
    """The first block of `now` that differs from `was` and its kind of change (named in `body`, the request
    `now` was read from); None when `was` is a prefix of `now` (the conversation only grew)."""
    i = common(was, now)
    if i == len(was.digests):
        return None
    before = was.digests[i]
    after = now.digests[i] if i < len(now.digests) else None
    kind = now.kinds[i] if i < len(now.kinds) else was.kinds[i]
    named = places(body) if body is not None else []
    where = named[i] if i < len(named) else f"block {i}" + ("" if i < len(now.digests) else " (gone)")
    if kind == MODEL:
        cause = "model"
    elif kind == SYSTEM or was.kinds[i] == SYSTEM:
        cause = "system"
    elif kind == TOOL or was.kinds[i] == TOOL:
        same = sorted(d for d, k in zip(was.digests, was.kinds) if k == TOOL) == \
            sorted(d for d, k in zip(now.digests, now.kinds) if k == TOOL)
        cause = "tool_order" if same else "tool"
    elif kind == MID_SYSTEM or was.kinds[i] == MID_SYSTEM:
        cause = "mid_system"
    elif i in was.texts and i in now.texts and was.texts[i] == now.texts[i]:
        cause = "image"
    else:
        cause = "edited"
    return Change(cause, i, where, before, after)


def closest(earlier: Sequence[Seen], now: Prefix) -> Seen | None:
    """The earlier turn this one continues: the newest, when this request begins with its whole prefix (a
    conversation that grew); else the one sharing the longest prefix (the newest of equals) — a client's side
    requests in the same conversation (a title, a summary) are not the turn before."""
    if not earlier:
        return None
    if now.raw.startswith(earlier[-1].prefix.raw):
        return earlier[-1]
    best: Seen | None = None
    length = -1
    for seen in reversed(earlier):
        n = common(seen.prefix, now)
        if n > length:
            best, length = seen, n
    return best


def diagnose(was: Seen | None, now: Seen, body: dict | None = None, ttl: float = TTL_S) -> Verdict:
    """Whether `now` missed more than `was` (the turn it continues), and why. A turn misses when it read less
    of the cache than that turn did, or when its prefix changed and it read less than that turn's prompt while
    missing more. The cause: another account (its cache is its own), else the five-minute expiry, else the
    prefix's first change, else unexplained (Qwen's cache is "not guaranteed")."""
    missed = max(0, now.prompt - now.cached)
    if was is None:
        return Verdict(now.turn, None, missed, 0, None, None)
    change = first_change(was.prefix, now.prefix, body)
    was_missed = max(0, was.prompt - was.cached)
    if not (now.cached < was.cached or (change is not None and now.cached < was.prompt and missed > was_missed)):
        return Verdict(now.turn, was.turn, missed, 0, None, change)
    lost = max(0, min(was.prompt, now.prompt) - now.cached)
    if now.account != was.account:  # the whole cache is the other account's, whatever else changed
        cause = "account"
    elif now.at - was.at > ttl:
        cause = "expiry"
    elif change is not None:
        cause = change.cause
    else:
        cause = "unexplained"
    return Verdict(now.turn, was.turn, missed, lost, cause, change)
