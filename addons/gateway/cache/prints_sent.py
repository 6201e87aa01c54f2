"""A chat turn's print made from the bytes the engine sent, reusing the turn before it: an agent resends its whole
conversation every turn, and encoding and hashing it again each time cost more than the rest of the gateway's
work on a long conversation (docs/performance.md). The turn before left, for its messages but the last and for
its tools, the length and checksum of their JSON (checksum.py) (prints.Reuse); where the same bytes stand in this request's
body as sent (`ex.attempt.sent`: the engine's own encoding, nothing encoded again), its blocks are taken as they
are and only the messages after them are read (prints.py). Anything else — another layout, a change — is read
whole, as prints.of_chat does."""

from __future__ import annotations

from array import array

from .checksum import Sum, checksum
from .prints import MESSAGES_KEY, SEEN_TOOLS, Print, Reuse, of_chat
from .prints_next import grown

_MESSAGES, _TOOLS = MESSAGES_KEY, b'"tools":['  # keys as orjson writes them (a quote in a string is escaped)
_MESSAGES_LEN, _TOOLS_LEN = len(_MESSAGES), len(_TOOLS)


def of_sent(body: dict, sent: bytes, before: Print | None, settings: bool = False) -> Print:
    """The print of a chat body as the engine sent it (`sent`), the conversation's previous turn `before` reused
    where this body repeats it."""
    reuse = before.reuse if before is not None else None
    messages = body.get("messages")
    kept = reuse.messages - 1 if reuse is not None else -1  # messages this turn repeats, the last one's marker aside
    if before is None or reuse is None or not sent or not isinstance(messages, list) or len(messages) <= kept \
            or kept < reuse.lead:
        return of_chat(body, settings, seen_tools(body, sent), sent)
    view = memoryview(sent)
    at = sent.find(_MESSAGES) + _MESSAGES_LEN
    if at < _MESSAGES_LEN:
        return of_chat(body, settings, seen_tools(body, sent))
    end = at + reuse.head_len
    # the turn before's last message as it foresaw (its marker gone), then a new one: the head and it read at once
    stop = end + (1 if kept else 0) + reuse.last_len
    head: Sum | None
    if reuse.last_len and len(messages) > kept + 1 and sent[stop:stop + 1] == b"," \
            and (head := Sum(view[at:stop])).intdigest() == reuse.next_sum:
        kept, end, foreseen, same_head = kept + 1, stop, True, True
    else:
        head = Sum(view[at:end]) if kept else None  # read once: checked, then grown by this turn's messages
        same_head = head is None or (sent[end:end + 1] == b"," and head.intdigest() == reuse.head_sum)
        foreseen = False
    tools = body.get("tools")
    same_tools = False
    if reuse.tools_len and isinstance(tools, list) and tools:
        # after the messages, else before them: never a scan of the messages (but where they changed)
        t = sent.find(_TOOLS, end if same_head else at)
        t = (t if t >= 0 else sent.find(_TOOLS, 0, at)) + _TOOLS_LEN - 1
        same_tools = t >= _TOOLS_LEN - 1 and sent[t + reuse.tools_len:t + reuse.tools_len + 1] in (b",", b"}") \
            and checksum(view[t:t + reuse.tools_len]) == reuse.tools_sum
    elif not reuse.tools_len and not tools:
        same_tools = True
    if not same_head:  # the messages read whole; the tools, where the same, not (a marker moved in the system text)
        return of_chat(body, settings, _tools(before, reuse) if same_tools and reuse.tools_len else None, sent)
    if not same_tools:
        return of_chat(body, settings, seen_tools(body, sent), sent)
    return grown(body, messages, before, reuse, kept, head, settings, foreseen)


def seen_tools(body: dict, sent: bytes) -> tuple | None:
    """A tool list a conversation sent before (prints.SEEN_TOOLS), found in these bytes as sent: its blocks and its
    JSON's length and checksum, as prints.of_chat takes them, so a new conversation of an agent whose every session
    sends the same tools does not encode them again. None: not found (they are encoded)."""
    tools = body.get("tools")
    if not SEEN_TOOLS or not sent or tools.__class__ is not list or not tools:
        return None
    t = sent.find(_TOOLS) + _TOOLS_LEN - 1  # at its "[": a key's quotes are never inside a string (escaped there)
    if t < _TOOLS_LEN - 1:
        return None
    for key, known in reversed(list(SEEN_TOOLS.items())):  # newest first (a copy: a worker thread may add one)
        length, digest = key
        if len(known[1]) == len(tools) and sent[t + length - 1:t + length + 1] in (b"],", b"]}") \
                and checksum(memoryview(sent)[t:t + length]) == digest:
            SEEN_TOOLS[key] = SEEN_TOOLS.pop(key, known)  # the newest again
            return known[0], known[1], length, digest
    return None


def _tools(before: Print, reuse: Reuse) -> tuple:
    """`before`'s tool blocks and its tools' JSON (length, checksum), as prints.of_chat takes them."""
    lo = 1 + reuse.system_blocks
    hi = lo + reuse.tool_blocks
    return reuse.tools_hour, list(zip(array("Q", before.raw[8 * lo:8 * hi]), before.sizes[lo:hi])), reuse.tools_len, \
        reuse.tools_sum

