"""A chat turn's print made from the bytes the engine sent, reusing the turn before it: an agent resends its whole
conversation every turn, and encoding and hashing it again each time cost more than the rest of the gateway's
work on a long conversation (docs/performance.md). The turn before left, for its messages but the last and for
its tools, the length and checksum of their JSON (checksum.py) (prints.Reuse); where the same bytes stand in this request's
body as sent (`ex.attempt.sent`: the engine's own encoding, nothing encoded again), its blocks are taken as they
are and only the messages after them are read (prints_next.py). Anything else — another layout, a change — is read
whole, as prints_chat.of_chat does."""

from __future__ import annotations

from .checksum import Sum, checksum
from .prints import MESSAGES_KEY, TOOLS_KEY, Print, Reuse
from .prints_chat import of_chat
from .prints_next import grown


def of_sent(body: dict, sent: bytes, before: Print | None, settings: bool = False) -> Print:
    """The print of a chat body as the engine sent it (`sent`), the conversation's previous turn `before` reused
    where this body repeats it."""
    reuse = before.reuse if before is not None else None
    messages = body.get("messages")
    if before is None or reuse is None or not sent or not isinstance(messages, list):
        return of_chat(body, settings, None, sent)
    # its fields as locals: a tuple's field read by name costs ~250 instructions, unpacked once ~20 each
    kept, lead, head_len, head_sum, _, _, _, _, _, _, last_len, next_sum = reuse
    kept -= 1  # messages this turn repeats, the last one's marker aside
    if len(messages) <= kept or kept < lead:
        return of_chat(body, settings, None, sent)
    at = sent.find(MESSAGES_KEY) + len(MESSAGES_KEY)
    if at < len(MESSAGES_KEY):
        return of_chat(body, settings, None, sent)
    view = memoryview(sent)
    end = at + head_len
    # the turn before's last message as it foresaw (its marker gone), then a new one: the head and it read at once
    stop = end + (1 if kept else 0) + last_len
    head: Sum | None
    if last_len and len(messages) > kept + 1 and sent[stop:stop + 1] == b"," \
            and (head := Sum(view[at:stop])).intdigest() == next_sum:
        made = grown(body, messages, before, reuse, kept + 1, head, settings, sent, view, at, True)
    else:
        head = Sum(view[at:end]) if kept else None  # read once: checked, then grown by this turn's messages
        if head is not None and (sent[end:end + 1] != b"," or head.intdigest() != head_sum):
            # the messages read whole; the tools, where the same, not (a marker moved in the system text)
            return of_chat(body, settings, _tools(before, reuse) if same_tools(body, sent, reuse, at) else None, sent)
        made = grown(body, messages, before, reuse, kept, head, settings, sent, view, at, False)
    return made if made is not None else of_chat(body, settings, None, sent)  # None: the tools changed


def same_tools(body: dict, sent: bytes, reuse: Reuse, at: int) -> bool:
    """Whether the body's tools are the turn before's (`reuse`): their JSON in the bytes sent, after the messages'
    start `at` else before it."""
    tools = body.get("tools")
    if not reuse.tools_len or not isinstance(tools, list) or not tools:
        return False
    t = sent.find(TOOLS_KEY, at)
    t = (t if t >= 0 else sent.find(TOOLS_KEY, 0, at)) + len(TOOLS_KEY) - 1
    return t >= len(TOOLS_KEY) - 1 and sent[t + reuse.tools_len:t + reuse.tools_len + 1] in (b",", b"}") \
        and checksum(memoryview(sent)[t:t + reuse.tools_len]) == reuse.tools_sum


def _tools(before: Print, reuse: Reuse) -> tuple:
    """`before`'s tool blocks and its tools' JSON (length, checksum), as prints.of_chat takes them."""
    lo = 1 + reuse.system_blocks
    hi = lo + reuse.tool_blocks
    return reuse.tools_hour, before.raw[8 * lo:8 * hi], before.sizes[lo:hi], reuse.tools_len, reuse.tools_sum

