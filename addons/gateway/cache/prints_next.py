"""A chat turn that repeats the turn before it (prints_sent.py found its bytes): the print made of the turn before's
blocks and of the new messages' alone. Where the turn before's last message stands as it foresaw (`Reuse.last_len`:
its JSON once its marker moved on), its block is taken too, and only the messages after it are encoded.

The new messages are commonly plain (hashed from their JSON as sent) but the last, which carries the gateway's
marker on its one text part: their blocks are made here, without a prints.Blocks and its calls (each Python call,
object or operation costs hundreds of instructions in this interpreter, and the doctor's share of a request is
counted in them); a long last message's JSON as sent is not encoded (only its size is kept: the next turn sends it
without the marker, as Qwen reads it, and that JSON is encoded). Any other tail — a message in parts, holding
images, a system one — is read by prints.Blocks, as a print read whole reads it. The tools are checked after the
new messages, in the bytes as sent."""

from __future__ import annotations

from bisect import bisect_left
from sys import byteorder
from typing import Any

import orjson

from .checksum import Sum
from .parts import MARKERS, TEXTS, asks_hour
from .prints import HOUR, MESSAGE, MINUTES, SLICE, SYSTEM_ROLES, TOOLS_KEY, Blocks, Print, Reuse, checksum, \
    encoded, model_block, settings_of

LONG = 2048  # characters of a last message's text past which its size as sent is made without encoding it


def grown(body: dict, messages: list, before: Print, reuse: Reuse, kept: int, head: Sum | None, settings: bool,
          sent: bytes, view: memoryview, at: int, foreseen: bool = False) -> Print | None:
    """`before`'s blocks for the system text, the tools and the `kept` messages this turn repeats; the model's and
    the rest's made. `head`: the checksum of the repeated messages' JSON, running; `at`: where the messages begin in
    `sent` (`view` of it); `foreseen`: the last repeated message is `before`'s last, as it foresaw (its block taken,
    its marker's gone). None: the tools are not `before`'s (the turn is read whole)."""
    # its fields as locals: a tuple's field read by name costs ~250 instructions, unpacked once ~20 each
    _, lead, was_len, was_sum, was_hour, tools_len, tools_sum, tools_hour, system_blocks, tool_blocks, was_last, _ = \
        reuse
    tail = messages[kept:]
    n = len(tail)
    b = None if n <= SLICE else Blocks(None, True)  # a prints.Blocks, for a tail other than the common one
    for m in tail[:-1]:
        if m.__class__ is dict and (m.get("content").__class__ is list or "cache_control" in m
                                    or m.get("role") in SYSTEM_ROLES):
            b = Blocks(None, True)
            break
    m = tail[-1]
    part: Any = None  # the last message's one text part, where it has one, and its text
    text = None
    if b is None and m.__class__ is dict and ((content := m.get("content")).__class__ is list or "cache_control" in m
                                              or m.get("role") in SYSTEM_ROLES):
        if not (content.__class__ is list and len(content) == 1 and (part := content[0]).__class__ is dict
                and part.get("type") in TEXTS and (text := part.get("text")).__class__ is str
                and m.get("role") not in SYSTEM_ROLES):  # its text alone (Blocks.canonical_message), else Blocks'
            b = Blocks(None, True)
    try:  # orjson called here, not through prints.dumps or encoded
        if b is not None or text is None:
            datas = list(map(orjson.dumps, tail)) if n <= SLICE else encoded(tail)
            last = datas[-1]
        elif "cache_control" in m or "prompt_cache_breakpoint" in m:  # its markers no part of what Qwen reads
            datas = list(map(orjson.dumps, tail))
            last = orjson.dumps({k: text if k == "content" else v for k, v in m.items() if k not in MARKERS})
        elif len(text) < LONG:
            datas = list(map(orjson.dumps, tail))
            last = orjson.dumps({**m, "content": text})
        else:  # its text's JSON once: its size as sent is its part's, without the text, around it
            datas = list(map(orjson.dumps, tail[:-1]))
            last = orjson.dumps({**m, "content": text})
            datas.append(len(last) + len(orjson.dumps([{**part, "text": ""}])) - 2)  # type: ignore[arg-type]
    except (TypeError, orjson.JSONEncodeError):  # what orjson refuses: by prints.Blocks, through prints.dumps
        datas, b = encoded(tail), Blocks(None, True)
        last = datas[-1]
    size = datas[-1] if datas[-1].__class__ is int else len(datas[-1])  # the last message's, as sent
    repeated = before.first_message + kept - lead  # the blocks this turn repeats
    unmarked = repeated - 1 if foreseen else repeated  # before's blocks as they were: its last one's marker gone
    model, _, digest = model_block(body.get("model"))
    parts = [digest, before.raw[8:8 * repeated]]  # the print's hashes: the repeated, the new
    sizes = before.sizes[:repeated]  # each step an object made: one a message, in the loop below
    sizes[0] = len(model)
    if foreseen:  # its JSON without its marker now
        sizes[-1] = was_last
    head_len = was_len + (1 + was_last if was_len else was_last) if foreseen else was_len
    if n > 1 and head is None:
        head = Sum()
    for data in datas[:n - 1]:  # the messages the next turn will repeat: the head grows by them
        k = len(data)
        sizes.append(k)
        head.update(b"," + data if head_len else data)  # type: ignore[union-attr]
        head_len += k + 1 if head_len else k
        if b is None:
            parts.append(checksum(data).to_bytes(8, byteorder))
    sizes.append(size)
    tools = body.get("tools")  # the turn before's, where they stand after the messages (else before them)
    if tools_len and isinstance(tools, list) and tools:
        t = sent.find(TOOLS_KEY, at + head_len + size + (1 if head_len else 0))
        t = (t if t >= 0 else sent.find(TOOLS_KEY, 0, at)) + len(TOOLS_KEY) - 1
        if t < len(TOOLS_KEY) - 1 or sent[t + tools_len:t + tools_len + 1] not in (b",", b"}") \
                or checksum(view[t:t + tools_len]) != tools_sum:
            return None
    elif tools_len or tools:
        return None
    marks = before.marks  # the repeated blocks' markers, then the new messages'
    if marks and marks[-1] >= unmarked:  # commonly the turn before's last message's alone
        marks = marks[:-1] if len(marks) < 2 or marks[-2] < unmarked else marks[:bisect_left(marks, unmarked)]
    head_hour = was_hour
    texts = spans = None  # the new messages' (Print.texts, Print.spans)
    if b is None:
        parts.append(checksum(last).to_bytes(8, byteorder))
        kinds = MESSAGE * n
        hour = False
        if text is not None:
            if "cache_control" in m or "cache_control" in part or "prompt_cache_breakpoint" in part:
                marks += (repeated + n - 1,)
            marker = part.get("cache_control")  # parts.asks_hour(part), without its call
            hour = marker.__class__ is dict and marker.get("ttl") == "1h" or (
                (marker := part.get("prompt_cache_breakpoint")).__class__ is dict and marker.get("ttl") == "1h") or (
                "cache_control" in m and asks_hour(m))
    else:
        b.add_messages(tail, datas)  # its blocks numbered from 0: they follow the repeated ones
        parts.append(b.digests.tobytes())
        kinds, last, texts, spans, hour = "".join(b.kinds), b.last_json, b.texts, b.spans, bool(b.hour_blocks)
        head_hour = head_hour or hour and any(i < n - 1 for i in b.hour_blocks)
        if b.marks:
            marks += tuple([repeated + i for i in b.marks])
    if before.texts or texts:  # the repeated blocks', then the new messages'
        texts = {**{i: h for i, h in (before.texts or {}).items() if i < unmarked},
                 **{repeated + i: h for i, h in (texts or {}).items()}} or None
    if before.spans or spans:  # as `texts`; none left: as a print read whole has (compared as equal)
        spans = {**{i: s for i, s in (before.spans or {}).items() if i < unmarked},
                 **{repeated + i: s for i, s in (spans or {}).items()}} or None
    head_sum = head.intdigest() if head is not None else was_sum
    last_len = next_sum = 0
    if last:  # as prints_chat.of_chat foresees it
        if head is None:
            head = Sum()
        if head_len:  # apart: the last message may be long (a file read)
            head.update(b",")
        head.update(last)
        last_len, next_sum = len(last), head.intdigest()
    hour = was_hour or tools_hour or hour
    nxt = tuple.__new__(Reuse, (len(messages), lead, head_len, head_sum, head_hour, tools_len, tools_sum, tools_hour,
                                system_blocks, tool_blocks, last_len, next_sum))
    read = 0  # the settings' hash: prints.settings_of, its common case without its call (the same list)
    if settings:
        g = body.get
        try:
            read = checksum(orjson.dumps([g("tool_choice"), g("enable_thinking"), g("thinking_budget"),
                                          g("reasoning_effort"), g("response_format"), g("thinking"), g("reasoning"),
                                          g("text")]))
        except (TypeError, orjson.JSONEncodeError):
            read = settings_of(body)
    return Print(before.kinds[:repeated] + kinds, b"".join(parts), sizes, before.first_message, texts, read,
                 HOUR if hour else MINUTES, nxt, marks, spans)
