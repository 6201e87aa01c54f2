"""A chat turn that repeats the turn before it (prints_sent.py found its bytes): the print made of the turn before's
blocks and of the new messages' alone. Where the turn before's last message stands as it foresaw (`Reuse.last_len`:
its JSON once its marker moved on), its block is taken too, and only the messages after it are encoded.

The new messages are commonly plain (hashed from their JSON as sent) but the last, which carries the gateway's
marker on its one text part: their blocks are made here, without a prints.Blocks and its calls (a Python call
costs hundreds of instructions, and the doctor's share of a request is counted in them); any other — a message in
parts, holding images, a system one — by prints.Blocks, as a print read whole makes them."""

from __future__ import annotations

from array import array
from bisect import bisect_left
from sys import byteorder

import orjson

from .checksum import Sum
from .parts import MARKERS, TEXTS, asks_hour
from .prints import HOUR, MESSAGE, MINUTES, MODEL, SETTINGS, SLICE, SYSTEM_ROLES, Blocks, Print, Reuse, checksum, \
    dumps, encoded, settings_of


def grown(body: dict, messages: list, before: Print, reuse: Reuse, kept: int, head: Sum | None, settings: bool,
          foreseen: bool = False) -> Print:
    """`before`'s blocks for the system text, the tools and the `kept` messages this turn repeats; the model's and
    the rest's made. `head`: the checksum of the repeated messages' JSON, running; `foreseen`: the last of them is
    `before`'s last, as it foresaw (its block taken, its marker's gone)."""
    tail = messages[kept:]
    try:  # orjson called here, not through prints.dumps or encoded
        model = orjson.dumps(body.get("model"))
        datas = list(map(orjson.dumps, tail)) if len(tail) <= SLICE else encoded(tail)
    except (TypeError, orjson.JSONEncodeError):
        model, datas = dumps(body.get("model")), encoded(tail)
    n = len(tail)
    b = None  # a prints.Blocks, for a tail other than the common one
    for m in tail[:-1]:
        if m.__class__ is dict and (m.get("content").__class__ is list or "cache_control" in m
                                    or m.get("role") in SYSTEM_ROLES):
            b = Blocks(None, True)
            break
    last, mark, hour = datas[-1], False, False  # the last message's JSON as the next turn sends it; its marker's
    m = tail[-1]
    if b is None and m.__class__ is dict and ((content := m.get("content")).__class__ is list or "cache_control" in m
                                              or m.get("role") in SYSTEM_ROLES):
        if content.__class__ is list and len(content) == 1 and (part := content[0]).__class__ is dict \
                and part.get("type") in TEXTS and (text := part.get("text")).__class__ is str \
                and m.get("role") not in SYSTEM_ROLES:  # its text alone (Blocks.canonical_message)
            mark = "cache_control" in m or "cache_control" in part or "prompt_cache_breakpoint" in part
            hour = asks_hour(part) or ("cache_control" in m and asks_hour(m))
            out = {**m, "content": text} if MARKERS.isdisjoint(m) else \
                {k: text if k == "content" else v for k, v in m.items() if k not in MARKERS}
            try:
                last = orjson.dumps(out)
            except (TypeError, orjson.JSONEncodeError):
                last = dumps(out)
        else:
            b = Blocks(None, True)
    repeated = before.first_message + kept - reuse.lead  # the blocks this turn repeats
    unmarked = repeated - 1 if foreseen else repeated  # before's blocks as they were: its last one's marker gone
    marks = before.marks  # the repeated blocks' markers, then the new messages'
    if marks and marks[-1] >= unmarked:
        marks = marks[:bisect_left(marks, unmarked)]
    head_hour = reuse.head_hour
    texts = spans = None  # the new messages' (Print.texts, Print.spans)
    if b is None:
        digests = array("Q", map(checksum, datas if last is datas[-1] else datas[:-1] + [last])).tobytes()
        kinds = MESSAGE * n
        if mark:
            marks += (repeated + n - 1,)
    else:
        b.add_messages(tail, datas)  # its blocks numbered from 0: they follow the repeated ones
        digests, kinds, last, texts, spans = b.digests.tobytes(), "".join(b.kinds), b.last_json, b.texts, b.spans
        hour = bool(b.hour_blocks)
        head_hour = head_hour or hour and any(i < n - 1 for i in b.hour_blocks)
        if b.marks:
            marks += tuple([repeated + i for i in b.marks])
    raw = b"".join((checksum(model).to_bytes(8, byteorder), before.raw[8:8 * repeated], digests))
    sizes = before.sizes[:repeated]  # each step an object made
    sizes[0] = len(model)
    if foreseen:  # its JSON without its marker now
        sizes[-1] = reuse.last_len
    sizes.extend(map(len, datas))
    if before.texts or texts:  # the repeated blocks', then the new messages'
        texts = {**{i: h for i, h in (before.texts or {}).items() if i < unmarked},
                 **{repeated + i: h for i, h in (texts or {}).items()}} or None
    if before.spans or spans:  # as `texts`; none left: as a print read whole has (compared as equal)
        spans = {**{i: s for i, s in (before.spans or {}).items() if i < unmarked},
                 **{repeated + i: s for i, s in (spans or {}).items()}} or None
    head_len = reuse.head_len + (1 + reuse.last_len if reuse.head_len else reuse.last_len) if foreseen else \
        reuse.head_len
    if n > 1:  # the messages the next turn will repeat: the head grows by them (one at a time: no copy of all)
        if head is None:
            head = Sum()
        for data in datas[:-1]:
            head.update(b"," + data if head_len else data)
            head_len += len(data) + (1 if head_len else 0)
    head_sum = head.intdigest() if head is not None else reuse.head_sum
    last_len = next_sum = 0
    if last:  # as prints.of_chat foresees it
        if head is None:
            head = Sum()
        if head_len:  # apart: the last message may be long (a file read)
            head.update(b",")
        head.update(last)
        last_len, next_sum = len(last), head.intdigest()
    hour = reuse.head_hour or reuse.tools_hour or hour
    nxt = Reuse(len(messages), reuse.lead, head_len, head_sum, head_hour, reuse.tools_len, reuse.tools_sum,
                reuse.tools_hour, reuse.system_blocks, reuse.tool_blocks, last_len, next_sum)
    read = 0  # the settings' hash (prints.settings_of), its common case without the call
    if settings:
        try:
            read = checksum(orjson.dumps(list(map(body.get, SETTINGS))))
        except (TypeError, orjson.JSONEncodeError):
            read = settings_of(body)
    return Print(MODEL + before.kinds[1:repeated] + kinds, raw, sizes, before.first_message, texts,
                 read, HOUR if hour else MINUTES, nxt, marks, spans)
