"""A chat request read whole into its print (prints.py): a conversation's first turn, or one that does not repeat
the turn before it (prints_sent.py reuses that one). Where the body's bytes as the engine sent them are given, what
they already hold is not encoded again: the leading system messages' JSON (the head the next turn checks) and a tool
list any conversation sent before (`seen_tools`: an agent's every session sends the same tools)."""

from __future__ import annotations

from array import array
from collections import OrderedDict

from .checksum import Sum, checksum
from .parts import MARKERS, asks_hour, strip
from .prints import MESSAGES_KEY, SEEN_TOOLS, SYSTEM, SYSTEM_ROLES, TOOLS_KEY, TOOLSETS, Blocks, Print, Reuse, dumps, \
    encoded, settings_of

NEEDLE = 32  # bytes of a message looked for in the body as sent (`found`)


def leading(messages: list) -> int:
    """How many messages the leading system text holds."""
    lead = 0
    while lead < len(messages) and messages[lead].__class__ is dict and messages[lead].get("role") in SYSTEM_ROLES:
        lead += 1
    return lead


def of_chat(body: dict, settings: bool = False, tools: tuple | None = None, sent: bytes = b"") -> Print:
    """The blocks of a chat request (the chat form, as it went upstream); `settings`: read them too (only a
    client's diagnostics compare them); `tools`: the tools' blocks and JSON's length and checksum, where this body
    repeats the tools of a turn before (prints_sent.py checked their JSON), taken instead of made again; `sent`: the
    body's bytes as the engine sent them, where the leading system messages' JSON is found, not encoded again, and
    a tool list seen before (`seen_tools`)."""
    b = Blocks(body.get("model"))
    messages = m if isinstance(m := body.get("messages"), list) else []
    lead = leading(messages)
    rest = encoded(messages[lead:])
    head = head_sent(sent, rest, b) if sent and lead and rest else None
    if head is None or head[3]:  # the system text's blocks, unless seen before (taken by head_sent)
        for m in messages[:lead]:
            system_parts(b, m.get("content"))
        if head is not None:  # its JSON's length and checksum: known the next time
            seen(SEEN_SYSTEMS, (head[3], head[4]), (b.hour, b.digests[1:].tobytes(), b.sizes[1:], tuple(b.marks)))
    system_blocks, head_hour = len(b.kinds) - 1, b.hour
    if tools is None and sent:  # looked for after the messages (where found: never a scan of them), else anywhere
        tools = seen_tools(body, sent, head[2] if head is not None else 0)
    b.add_tools(body.get("tools"), tools)
    tool_blocks = len(b.kinds) - 1 - system_blocks
    b.add_messages(messages[lead:], rest)
    if head is None:
        joined = b",".join((encoded(messages[:lead]) + rest)[:-1])
        head = len(joined), Sum(joined), 0, 0, 0
    head_sum, last_len, next_sum = head[1].intdigest(), len(b.last_json), 0
    if last_len:  # Reuse.next_sum: the head grown by the last message as the next turn sends it
        head[1].update(b"," + b.last_json if head[0] else b.last_json)
        next_sum = head[1].intdigest()
    tools_len, tools_sum = (len(b.whole_tools), b.tools_sum if b.whole_tools else checksum(b"")) if tools is None \
        else tools[3:]
    head_hour = head_hour or any(i < len(b.kinds) - 1 for i in b.hour_blocks)
    reuse = tuple.__new__(Reuse, (len(messages), lead, head[0], head_sum, head_hour, tools_len, tools_sum,
                                  b.tools_hour, system_blocks, tool_blocks, last_len, next_sum)) if messages else None
    return b.done(settings_of(body) if settings else 0, reuse)


def head_sent(sent: bytes, rest: list[bytes], b: Blocks) -> tuple[int, Sum, int, int, int] | None:
    """The length and running checksum of the JSON of a body's messages but the last, read in its bytes as sent: the
    leading system messages' up to where the first of the `rest` (each message after them, as encoded) stands, then
    the rest's; where the messages end; and the system messages' JSON, its length and checksum where it was not seen
    before (0, 0: it was, and its blocks are added to `b`). None: not found as encoded (they are encoded and
    joined)."""
    at = sent.find(MESSAGES_KEY) + len(MESSAGES_KEY)
    if at < len(MESSAGES_KEY):
        return None
    # a system text seen before (an agent's every session sends it): no search for where it ends, no encoding;
    # the one seen last tried first, without a copy of them all (commonly it)
    view, system, newest = memoryview(sent), None, NEWEST_SYSTEM
    if newest is not None and (head := system_at(sent, view, at, rest[0], newest[0])) is not None:
        system = newest
    else:
        for key, known in reversed(list(SEEN_SYSTEMS.items())) if SEEN_SYSTEMS else ():
            if (head := system_at(sent, view, at, rest[0], key)) is not None:
                system = key, known
                break
    if system is not None:
        first = at + system[0][0] + 1
    else:
        first = found(sent, rest[0], at) + 1  # never inside a string (escaped)
        if first <= 0:
            return None
    end = first + sum(map(len, rest[:-1])) + len(rest) - 1  # where the last message stands
    if sent[end - 1:end] != b"," or not sent.startswith(rest[-1], end):
        return None
    if system is not None:  # its blocks as that one made them; its JSON's read already: the rest's after it
        key, known = system
        if system is not newest:
            seen(SEEN_SYSTEMS, key, known)
        b.hour |= known[0]
        b.kinds += SYSTEM * len(known[2])
        b.digests.frombytes(known[1])
        b.sizes += known[2]
        b.marks += known[3]
        head.update(view[first - 1:end - 1])  # type: ignore[union-attr]
        return end - 1 - at, head, end + len(rest[-1]), 0, 0  # type: ignore[return-value]
    head = Sum(view[at:first - 1])
    digest = head.intdigest()
    head.update(view[first - 1:end - 1])
    return end - 1 - at, head, end + len(rest[-1]), first - 1 - at, digest


def system_at(sent: bytes, view: memoryview, at: int, first_message: bytes, key: tuple[int, int]) -> Sum | None:
    """The running checksum of a seen system text's JSON (`key`: its length and checksum) where it stands at `at`,
    the first message after it; None: it does not."""
    length = key[0]
    if sent[at + length:at + length + 1] == b"," and sent.startswith(first_message, at + length + 1) \
            and (head := Sum(view[at:at + length])).intdigest() == key[1]:
        return head
    return None


def found(sent: bytes, data: bytes, at: int) -> int:
    """Where `data` first stands after a comma in `sent`, from `at` (-1: nowhere): `sent.find(b"," + data, at)`, its
    first NEEDLE bytes looked for and the rest compared where they stand — a long message as the needle cost ~25
    instructions a byte of it to prepare and as many again to search."""
    needle = b"," + data[:NEEDLE]
    while (i := sent.find(needle, at)) >= 0 and not sent.startswith(data, i + 1):
        at = i + 1
    return i


def system_parts(b: Blocks, content: object) -> None:
    """Each part of a system text its own block (a string is one part)."""
    for part in content if isinstance(content, list) else [content]:
        if isinstance(part, dict) and not MARKERS.isdisjoint(part):
            b.hour |= asks_hour(part)
            b.marks.append(len(b.kinds))
        text = part.get("text") if isinstance(part, dict) else part
        b.add(SYSTEM, dumps(text if isinstance(text, str) else strip(part)))


def seen_tools(body: dict, sent: bytes, start: int = 0) -> tuple | None:
    """A tool list a conversation sent before (prints.SEEN_TOOLS), found in these bytes as sent: its blocks and its
    JSON's length and checksum, as `of_chat` takes them, so a new conversation of an agent whose every session
    sends the same tools does not encode them again. Looked for from `start` (where the messages end, when known),
    then before it. None: not found (they are encoded)."""
    tools = body.get("tools")
    if not SEEN_TOOLS and NEWEST_TOOLS is None or not sent or tools.__class__ is not list or not tools:
        return None
    t = sent.find(TOOLS_KEY, start)  # at its "[": a key's quotes are never inside a string (escaped there)
    t = (t if t >= 0 or not start else sent.find(TOOLS_KEY, 0, start)) + len(TOOLS_KEY) - 1
    if t < len(TOOLS_KEY) - 1:
        return None
    newest = NEWEST_TOOLS  # the list seen last tried first, without a copy of them all (commonly it)
    if newest is not None and tools_at(sent, t, tools, *newest):
        key, known = newest
    else:
        for key, known in reversed(list(SEEN_TOOLS.items())):  # newest first (a copy: a worker thread may add one)
            if tools_at(sent, t, tools, key, known):
                seen(SEEN_TOOLS, key, known)
                break
        else:
            return None
    return known[0], known[1], known[2], key[0], key[1]


def tools_at(sent: bytes, t: int, tools: list, key: tuple[int, int], known: tuple) -> bool:
    """Whether a seen tool list (`key`: its JSON's length and checksum; `known`: its blocks) stands at `t`."""
    length, digest = key
    return len(known[2]) == len(tools) and sent[t + length - 1:t + length + 1] in (b"],", b"]}") \
        and checksum(memoryview(sent)[t:t + length]) == digest


def seen(memo: OrderedDict, key: tuple, known: tuple) -> None:
    """`known` the newest of `memo` (SEEN_TOOLS, SEEN_SYSTEMS), the oldest dropped past TOOLSETS; a worker thread
    (diagnosis.py) may have dropped it meanwhile. Also the one tried first next time (NEWEST_*): an entry is its
    JSON's length and checksum and what that JSON makes, so one dropped from `memo` since is still right."""
    global NEWEST_SYSTEM, NEWEST_TOOLS
    memo[key] = memo.pop(key, known)
    if len(memo) > TOOLSETS:
        memo.popitem(last=False)
    if memo is SEEN_SYSTEMS:
        NEWEST_SYSTEM = key, known
    else:
        NEWEST_TOOLS = key, known


# a leading system text's JSON (its length, its checksum) -> whether its markers ask an hour, its blocks (their
# hashes, 8 bytes each, and sizes) and the ones a marker ends (the model's block 0): an agent's every session sends
# the same one
SEEN_SYSTEMS: OrderedDict[tuple[int, int], tuple[bool, bytes, array, tuple[int, ...]]] = OrderedDict()
NEWEST_SYSTEM: tuple | None = None  # the (key, value) of SEEN_SYSTEMS seen last; NEWEST_TOOLS, of SEEN_TOOLS
NEWEST_TOOLS: tuple | None = None
