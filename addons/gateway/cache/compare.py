"""Two turns' prefixes compared (pure): the first block that differs and its kind of change, the earlier turn a
request continues, and whether a turn read less of Qwen's cache than that turn left in it, and why.

Qwen's cache holds prefixes of a prompt, per account: what an earlier request read or wrote stays readable for
its lifetime (five minutes, or an hour where the model takes it: turn/cache_lifetime.py), reset on each use. A turn that
read less than what the turn it continues left there *missed*; the cause is the first that applies: another
account (each account's cache is its own), the lifetime passed, the prefix changed before that point, every
marker of the request more than LOOKBACK content blocks past the prefix that turn stored (Qwen looks back no
further: the request's shape), else Qwen's own doing — its implicit cache is "not guaranteed", and an explicit
one can be evicted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .prints import MID_SYSTEM, MODEL, SYSTEM, TOOL, Print

LOOKBACK = 20  # content blocks Qwen looks back from a marker for a stored prefix (Model Studio's "Context cache")
# Why a turn missed, in the order a prefix is read; then what is no change of the prefix.
CAUSES = {
    "model": "the model changed",
    "route": "a route sent it to another model",
    "system": "the system text changed",
    "tool_order": "the tools were reordered",
    "tool": "a tool definition changed",
    "edited": "an earlier message was edited",
    "mid_system": "a system message mid-conversation",
    "image": "an image changed, or moved the request to a vision model",
    "account": "another account (its cache is its own)",
    "expiry": "past the cache's lifetime since the turn before",
    "lookback": f"every marker more than {LOOKBACK} blocks past the turn before's prefix: Qwen looks back no further",
    "unexplained": "no change found in the prefix: Qwen dropped it",
}
SLACK = 32  # tokens: Qwen's counts of one prefix in two requests may differ by the tokens at its edge


class Turn:
    """One answered turn as the memory keeps it: no prompt text, its print (possibly shared with a later turn
    of the same conversation: `blocks` of it are this turn's) and Qwen's usage once known."""

    __slots__ = ("turn", "at", "account", "route", "lifetime", "print", "blocks", "prompt", "cached", "written",
                 "explicit", "tenant", "marks")

    def __init__(self, print_: Print, at: float, account: str = "", route: str = "", lifetime: float = 300.0,
                 tenant: str = "") -> None:
        self.print = print_  # each its own statement: a tuple of several built and unpacked costs more
        self.blocks = len(print_.kinds)
        self.marks = print_.marks  # its own: a later turn sharing its print marks other blocks
        self.turn = 0
        self.at = at
        self.account = account
        self.route = route
        self.lifetime = lifetime
        self.tenant = tenant
        self.prompt: int | None = None  # Qwen's usage: unknown until the answer ends
        self.cached = self.written = 0
        self.explicit = False  # the explicit cache (markers): what it read and wrote stays for its lifetime

    @property
    def raw(self) -> bytes:
        p = self.print
        return p.raw if self.blocks == len(p.kinds) else p.raw[:8 * self.blocks]

    def tokens_before(self, block: int) -> int:
        """Qwen's tokens of this turn's blocks before `block`, estimated from their sizes and its prompt."""
        size = self.print.size_before(self.blocks)
        if not size:
            return 0
        ratio = (self.prompt / size) if self.prompt else 0.25  # no usage yet: 4 bytes a token
        return round(self.print.size_before(min(block, self.blocks)) * ratio)


STORED_LEAST = 1024  # tokens an explicit prefix holds at least to be stored


def resumes_at(was: Turn, now: Turn, change: int) -> int | None:
    """Where Qwen can go on reading `now` after `was`, `now` differing from block `change` on. A request with
    markers reads the explicit cache only: from the block after the latest prefix `was` stored there (a marker's,
    of at least STORED_LEAST tokens) before the change that one of `now`'s markers finds looking back LOOKBACK
    content blocks (parts_between); 0: none (`was` stored none: the two caches never mix). None: `now` has no marker, so the implicit
    cache reads it, up to the change."""
    if not now.marks:
        return None
    if not was.marks:
        return 0
    for m in reversed(was.marks):
        if m < change and was.tokens_before(m + 1) >= STORED_LEAST and any(
                n >= m and parts_between(now, m, n) <= LOOKBACK for n in now.marks):
            return m + 1
    return 0


def parts_between(turn: Turn, start: int, end: int) -> int:
    """Qwen's content blocks after block `start` up to block `end` of `turn`'s print: a system part and a message's
    part each one (Print.spans), the model and the tools none (Qwen's template renders the tools in the text).
    A message's tool calls are not counted: a lookback judged within reach may be a block or two short."""
    p = turn.print
    kinds = p.kinds
    n = end - start - kinds.count(MODEL, start + 1, end + 1) - kinds.count(TOOL, start + 1, end + 1)
    if p.spans:
        n += sum(parts - 1 for k, parts in p.spans.items() if start < k <= end)
    return n


def beyond_lookback(was: Turn, now: Turn, change: int) -> bool:
    """Whether `was`'s newest stored prefix before block `change` is past the lookback of each of `now`'s markers
    that follow it (none of them can find it), though one of them follows it."""
    if not now.marks:
        return False
    for m in reversed(was.marks):
        if m < change and was.tokens_before(m + 1) >= STORED_LEAST:
            after = [n for n in now.marks if n >= m]
            return bool(after) and all(parts_between(now, m, n) > LOOKBACK for n in after)
    return False


@dataclass(slots=True)
class Change:
    cause: str  # a key of CAUSES
    index: int  # the first block that differs
    where: str  # its place in the later request ("tools[2] Bash"), when that request was given
    was: int | None  # the earlier turn's hash there (None: it had no such block)
    now: int | None


@dataclass(slots=True)
class Verdict:
    turn: int
    against: int | None  # the earlier turn compared with
    missed: int  # prompt tokens not read from the cache
    lost: int  # of them, those the earlier turn's cache should have served (0: no miss)
    cause: str | None  # why (a key of CAUSES), None when the turn missed nothing it could have read
    change: Change | None  # the prefix's first difference, when there is one


def common(x: bytes, y: bytes) -> int:
    """How many leading blocks two prefixes share: their bytes compared in halves (memcmp, no Python int a block)."""
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


def _digest(turn: Turn, i: int) -> int | None:
    return int.from_bytes(turn.print.raw[8 * i:8 * i + 8], "little", signed=True) if i < turn.blocks else None


def first_change(was: Turn, now: Turn, named: list[str] | None = None) -> Change | None:
    """The first block of `now` that differs from `was` and its kind of change (`named`: where each block of
    `now` is, prints_forms.places); None when `was` is a prefix of `now` (the conversation only grew)."""
    if grew(was, now):  # the conversation only grew (or is the same): one call, not Turn.raw's two
        return None
    before_raw, now_raw = was.raw, now.raw
    if now_raw.startswith(before_raw):
        return None
    i = common(before_raw, now_raw)
    a, b = was.print, now.print
    kind = b.kinds[i] if i < now.blocks else a.kinds[i]
    before = a.kinds[i]
    where = named[i] if named is not None and i < len(named) else f"block {i}" + ("" if i < now.blocks else " (gone)")
    if kind == MODEL:
        cause = "model"
    elif SYSTEM in (kind, before):
        cause = "system"
    elif TOOL in (kind, before):
        tools_was = sorted(a.raw[8 * k:8 * k + 8] for k in range(was.blocks) if a.kinds[k] == TOOL)
        tools_now = sorted(b.raw[8 * k:8 * k + 8] for k in range(now.blocks) if b.kinds[k] == TOOL)
        cause = "tool_order" if tools_was == tools_now else "tool"
    elif MID_SYSTEM in (kind, before):
        cause = "mid_system"
    elif a.texts and b.texts and i in a.texts and a.texts[i] == b.texts.get(i):
        cause = "image"
    else:
        cause = "edited"
    return Change(cause, i, where, _digest(was, i), _digest(now, i))


def grew(was: Turn, now: Turn) -> bool:
    """Whether `now` begins with all of `was` (its own print whole, `now`'s too) and opens with the same message:
    what `continues` and `now.raw.startswith(was.raw)` say together, read without a Python call."""
    a, b = was.print, now.print
    n = was.blocks
    return n == len(a.kinds) and now.blocks == len(b.kinds) and a.first_message == b.first_message < n \
        and b.raw.startswith(a.raw)


def continues(was: Turn, now: Turn) -> bool:
    """Whether `now` goes on from `was`'s conversation: both open with the same message. A client's side request
    in the same session (a title, a topic, on another model) opens with its own: it continues nothing."""
    a, b = was.print, now.print
    i, j = a.first_message, b.first_message
    return i < was.blocks and j < now.blocks and a.raw[8 * i:8 * i + 8] == b.raw[8 * j:8 * j + 8]


def closest(earlier: Sequence[Turn], now: Turn) -> Turn | None:
    """The earlier turn `now` continues: the newest whose whole prefix `now` begins with (a conversation that
    grew), else the one sharing the longest prefix with it (the newest of equals); else the newest whose model,
    system and tools `now` repeats up to its first message (that message edited: where Claude Code keeps its
    session context); None when it continues none (a side request has its own model, system or tools)."""
    if earlier and (seen := earlier[-1]).prompt is not None and grew(seen, now):
        return seen  # the newest kept turn, grown (the common case: what the loop below finds first, at less cost)
    raw = now.raw
    best: Turn | None = None
    length = -1
    for seen in reversed(earlier):
        if seen.prompt is None or not continues(seen, now):
            continue
        if raw.startswith(seen.raw):
            return seen
        n = common(seen.raw, raw)
        if n > length:
            best, length = seen, n
    if best is None:
        opening = now.print.first_message
        for seen in reversed(earlier):
            if seen.prompt is not None and 0 < opening == seen.print.first_message < min(seen.blocks, now.blocks) \
                    and common(seen.raw, raw) >= opening:
                return seen
    return best


def read_all(was: Turn, now: Turn) -> bool:
    """Whether `now`, which begins with all of `was` (`grew`), read what `was` left in the cache: `diagnose(was,
    now, grown=True)` names no cause (the doctor's common turn, told without a Verdict made)."""
    if was.explicit:
        reach = was.cached + was.written
        prompt = now.prompt or 0
        return now.cached + SLACK >= (reach if reach < prompt else prompt)
    return now.cached >= was.cached


def diagnose(was: Turn | None, now: Turn, change: Change | None = None, grown: bool = False) -> Verdict:
    """Whether `now` read less than `was` (the turn it continues) left in the cache, and why (see the module);
    `grown`: `now` begins with all of `was` (`grew` said so), so no change is looked for."""
    prompt = now.prompt or 0  # max and min not called: a builtin's call costs ~1,500 instructions, four times this
    missed = prompt - now.cached if prompt > now.cached else 0
    if was is None or was.prompt is None:
        return Verdict(now.turn, None, missed, 0, None, None)
    if change is None and not grown:
        change = first_change(was, now)
    if was.explicit:  # what it read and wrote stays for its lifetime
        reach = was.cached + was.written if was.cached + was.written < prompt else prompt
        if now.cached + SLACK >= reach:
            return Verdict(now.turn, was.turn, missed, 0, None, change)
    else:  # the implicit cache promises nothing: less read than that turn, or a changed prefix that missed more
        reach = was.prompt if was.prompt < prompt else prompt
        if not (now.cached < was.cached or (change is not None and now.cached < was.prompt
                                            and missed > was.prompt - was.cached)):
            return Verdict(now.turn, was.turn, missed, 0, None, change)
    lost = reach - now.cached if reach > now.cached else 0
    if now.account != was.account:  # the whole cache is the other account's, whatever else changed
        cause = "account"
    elif now.at - was.at > was.lifetime:
        cause = "expiry"
    elif change is not None and (not was.explicit or was.tokens_before(change.index) < reach):
        cause = change.cause
        if cause == "model" and (now.route or was.route):  # a route moved the model, not the client
            cause = "image" if "images" in (now.route, was.route) else "route"
    elif was.explicit and beyond_lookback(was, now, now.blocks if change is None else change.index):
        cause = "lookback"
    else:
        cause = "unexplained"
    return Verdict(now.turn, was.turn, missed, lost, cause, change)
