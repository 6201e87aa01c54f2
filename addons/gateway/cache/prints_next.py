"""A chat turn that repeats the turn before it (prints_sent.py found its bytes): the print made of the turn before's
blocks and of the new messages' alone. Where the turn before's last message stands as it foresaw (`Reuse.last_len`:
its JSON once its marker moved on), its block is taken too, and only the messages after it are encoded."""

from __future__ import annotations

from bisect import bisect_left
from sys import byteorder

import orjson

from .checksum import Sum
from .prints import HOUR, MINUTES, MODEL, SETTINGS, SLICE, Blocks, Print, Reuse, checksum, dumps, encoded, settings_of


def grown(body: dict, messages: list, before: Print, reuse: Reuse, kept: int, head: Sum | None, settings: bool,
          foreseen: bool = False) -> Print:
    """`before`'s blocks for the system text, the tools and the `kept` messages this turn repeats; the model's and
    the rest's made (prints.Blocks). `head`: the checksum of the repeated messages' JSON, running; `foreseen`: the
    last of them is `before`'s last, as it foresaw (its block taken, its marker's gone)."""
    tail = messages[kept:]
    try:  # orjson called here, not through prints.dumps or encoded: a Python call costs thousands of instructions
        model = orjson.dumps(body.get("model"))
        datas = list(map(orjson.dumps, tail)) if len(tail) <= SLICE else encoded(tail)
    except (TypeError, orjson.JSONEncodeError):
        model, datas = dumps(body.get("model")), encoded(tail)
    b = Blocks(None, True)  # empty
    b.add_messages(tail, datas)  # its blocks numbered from 0: they follow the repeated ones
    repeated = before.first_message + kept - reuse.lead  # the blocks this turn repeats
    unmarked = repeated - 1 if foreseen else repeated  # before's blocks as they were: its last one's marker gone
    raw = b"".join((checksum(model).to_bytes(8, byteorder), before.raw[8:8 * repeated], b.digests.tobytes()))
    sizes = before.sizes[:repeated]  # each step an object made: a Python call costs hundreds of instructions
    sizes[0] = len(model)
    if foreseen:  # its JSON without its marker now
        sizes[-1] = reuse.last_len
    sizes.extend(b.sizes)
    texts = None
    if before.texts or b.texts:
        texts = {i: h for i, h in (before.texts or {}).items() if i < unmarked}
        texts.update({repeated + i: h for i, h in (b.texts or {}).items()})
        texts = texts or None
    head_len = reuse.head_len + (1 + reuse.last_len if reuse.head_len else reuse.last_len) if foreseen else \
        reuse.head_len
    if len(datas) > 1:  # the messages the next turn will repeat: the head grows by them
        if head is None:
            head = Sum()
        for data in datas[:-1]:
            head.update(b"," + data if head_len else data)
            head_len += len(data) + (1 if head_len else 0)
    head_sum = head.intdigest() if head is not None else reuse.head_sum
    last_len = next_sum = 0
    if last := b.last_json:  # as prints.of_chat foresees it
        if head is None:
            head = Sum()
        if head_len:  # apart: the last message may be long (a file read)
            head.update(b",")
        head.update(last)
        last_len, next_sum = len(last), head.intdigest()
    head_hour = reuse.head_hour or bool(b.hour_blocks) and any(i < len(tail) - 1 for i in b.hour_blocks)
    hour = reuse.head_hour or reuse.tools_hour or bool(b.hour_blocks)
    nxt = Reuse(len(messages), reuse.lead, head_len, head_sum, head_hour, reuse.tools_len, reuse.tools_sum,
                reuse.tools_hour, reuse.system_blocks, reuse.tool_blocks, last_len, next_sum)
    marks = before.marks  # the repeated blocks' markers, then the new messages' (no call on the common path)
    if marks and marks[-1] >= unmarked:
        marks = marks[:bisect_left(marks, unmarked)]
    if b.marks:
        marks += tuple([repeated + i for i in b.marks])
    spans = None  # as `texts`: the repeated blocks', then the new messages'
    if before.spans or b.spans:
        spans = {i: n for i, n in (before.spans or {}).items() if i < unmarked}
        spans.update({repeated + i: n for i, n in (b.spans or {}).items()})
        spans = spans or None  # none left: as a print read whole has (compared as equal)
    read = 0  # the settings' hash (prints.settings_of), its common case without the call
    if settings:
        try:
            read = checksum(orjson.dumps(list(map(body.get, SETTINGS))))
        except (TypeError, orjson.JSONEncodeError):
            read = settings_of(body)
    return Print(MODEL + before.kinds[1:repeated] + "".join(b.kinds), raw, sizes, before.first_message, texts,
                 read, HOUR if hour else MINUTES, nxt, marks, spans)
