"""Batch advice: when a batch file's lines share a long prompt prefix, what the batch costs as submitted against the
same lines sent one by one in real time, where every line after the first reads that prefix from Qwen's cache.

The lines are read where the upload translates them (lines.py): each translated chat body's blocks as the cache
doctor prints them (cache/prints.py: model, system parts, tools, messages, in the order Qwen reads the prompt; a
string and a one-part text list the same, cache markers no part of it), the longest prefix of blocks that every
line of one Qwen model shares (lines of another model share nothing with them: Qwen's cache is per model), and
each line's prompt estimated as the gateway estimates prompts (tokens.py, characters / 4). Per model, two
estimates, input only (the answers' length is unknown before they are written):
- `batch`: every line's input at the batch rate (the catalogue's `batch_rate`, source T). Whether Qwen's Batch
  API reads its cache for batch lines is not in any source read: unknown, so this counts no cache read.
- `realtime`: the same lines at the real-time price, the shared prefix written once to Qwen's explicit cache by
  the first line and read from it by the others, at the model's cache prices (pricing/prices.py) — as far as a
  marker the line carries as built (the gateway's own, upstream/dashscope/markers.py, and the client's) ends a
  prefix of 1,024 tokens or more inside the shared one: Qwen stores a prefix only at a marker, so a shared
  document no marker ends is read again by every line (a line without any marker: the implicit cache, which
  reads the shared prefix, not guaranteed).
A model no price counts is "unpriced": unknown, never $0. Advice only: the batch goes to Qwen as the client made
it. Nothing is kept but counts and prices: no prompt text, no hash."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from ...cache import prints, prints_chat
from ...pricing.prices import UNPRICED, Charge, usd
from ...tokens import estimate_request_tokens

MIN_PREFIX = 1024  # tokens: Qwen caches no shorter prefix (Model Studio's "Context cache", markers.MIN_TOKENS)
MIN_LINES = 2  # the second line is the first that reads what the first wrote
# (Qwen's model, usage, batch) -> what it is counted at (PriceTable.charge on the account's billing)
Price = Callable[[str, dict, bool], "Charge | None"]
HASH = 8  # bytes of a block's hash in a print


@dataclass
class _Group:
    """The lines of one Qwen model: the first line's blocks, how many of them every line shares, each line's
    prompt estimate."""

    kinds: str
    raw: bytes
    sizes: list[int]
    shared: int  # blocks every line so far shares with the first (the model's block included)
    marks: tuple[int, ...] = ()  # the first line's marked blocks, as built (prints.Print.marks)
    tokens: list[int] = field(default_factory=list)

    def add(self, print_: prints.Print) -> None:
        n = min(self.shared, print_.blocks)
        if self.raw[:n * HASH] != print_.raw[:n * HASH] or self.kinds[:n] != print_.kinds[:n]:
            n = next(i for i in range(n) if self.kinds[i] != print_.kinds[i] or
                     self.raw[i * HASH:(i + 1) * HASH] != print_.raw[i * HASH:(i + 1) * HASH])
        self.shared = n

    def prefix_tokens(self, blocks: int | None = None) -> int:
        """The shared blocks' (or the first `blocks'`) share of the first line's estimate (by their bytes), the
        model's name left out."""
        whole = sum(self.sizes[1:])
        end = self.shared if blocks is None else blocks
        return round(self.tokens[0] * sum(self.sizes[1:end]) / whole) if whole else 0

    def readable(self) -> int:
        """The blocks another line reads from Qwen's cache in real time: the shared ones up to the last marker among
        them that ends a prefix Qwen stores (MIN_PREFIX tokens or more); all shared ones without markers."""
        if not self.marks:
            return self.shared
        stored = [m + 1 for m in self.marks if m < self.shared and self.prefix_tokens(m + 1) >= MIN_PREFIX]
        return max(stored, default=1)


class Prefixes:
    """Fed each translated chat line of an upload (in the batch files' worker thread), then asked for the advice."""

    def __init__(self) -> None:
        self.groups: dict[str, _Group] = {}

    def add(self, body: dict) -> None:
        model = str(body.get("model") or "")
        try:
            print_ = prints_chat.of_chat(body)
        except KeyError:  # the doctor's tool-list memo changed under this thread: read once more
            print_ = prints_chat.of_chat(body)
        group = self.groups.get(model)
        if group is None:
            group = self.groups[model] = _Group(print_.kinds, print_.raw, list(print_.sizes), print_.blocks,
                                                print_.marks)
        else:
            group.add(print_)
        group.tokens.append(estimate_request_tokens(body, exact=False)[0])

    def advice(self, price: Price) -> Advice:
        return Advice([_estimate(model, g, price) for model, g in self.groups.items()])


@dataclass
class Model:
    """One Qwen model's lines: whether they are advised on, and why not when not."""

    model: str
    lines: int
    input_tokens: int  # estimated, every line's prompt
    prefix_tokens: int  # estimated, the prefix every line shares
    advised: bool = False
    readable_tokens: int | None = None  # of it, what Qwen's cache keeps for the other lines (None: all of it)
    why_not: str = ""
    batch: float | None = None  # input only, at the batch rate, no cache read (None: unpriced)
    realtime: float | None = None  # input only, one by one, the prefix written once and read by the others
    unit: str = UNPRICED

    def line(self) -> str:
        head = f"{self.model}: {self.lines:,} line{'s' if self.lines != 1 else ''} " + (
            f"share a ~{self.prefix_tokens:,}-token prefix" if self.prefix_tokens else "share no prefix")
        if self.readable_tokens is not None and self.readable_tokens < self.prefix_tokens:
            head += (f", of which Qwen's cache keeps ~{self.readable_tokens:,} tokens for the other lines (it stores "
                     "a prefix only where a marker ends it)")
        if not self.advised:
            return f"{head}: no advice ({self.why_not})"
        if self.batch is None or self.realtime is None:
            return (f"{head}: as a batch unpriced, one by one in real time unpriced (the model has no price: "
                    "which is cheaper is unknown)")
        batch, realtime = _amount(self.batch, self.unit), _amount(self.realtime, self.unit)
        cheaper = "real time" if self.realtime < self.batch else "the batch"
        how = (f"the prefix written once to Qwen's explicit cache, read by the other {self.lines - 1:,}"
               if self.readable_tokens != 0 else "nothing read from Qwen's cache: every line at the full price")
        return (f"{head}; input only (output unknown): as a batch {batch} (batch rate; whether batch lines read "
                f"Qwen's cache: unknown, counted as not), one by one in real time {realtime} ({how}): {cheaper} "
                "estimated cheaper")


@dataclass
class Advice:
    models: list[Model]

    @property
    def advised(self) -> list[Model]:
        return [m for m in self.models if m.advised]

    def text(self) -> str:
        """One line per model, for the flow's note, the log and qwen-usage; "" when no chat line was read."""
        return "; ".join(m.line() for m in self.models)

    def dumps(self) -> str:
        return json.dumps([asdict(m) for m in self.models], separators=(",", ":"))

    @classmethod
    def loads(cls, text: str) -> Advice | None:
        """What dumps wrote (None: nothing, or what an older gateway could not write)."""
        try:
            rows = json.loads(text) if text else None
            return cls([Model(**r) for r in rows]) if isinstance(rows, list) else None
        except (ValueError, TypeError):
            return None


def _amount(amount: float, unit: str) -> str:
    return usd(amount) if unit == "USD" else f"{amount:,.2f} {unit}"


def _estimate(model: str, g: _Group, price: Price) -> Model:
    out = Model(model, len(g.tokens), sum(g.tokens), g.prefix_tokens())
    if out.lines < MIN_LINES:
        out.why_not = "one line: nothing to read from the cache"
    elif out.prefix_tokens < MIN_PREFIX:
        out.why_not = f"under the {MIN_PREFIX:,} tokens Qwen caches"
    else:
        out.advised = True
        readable = g.prefix_tokens(g.readable())
        if readable != out.prefix_tokens:
            out.readable_tokens = readable
        out.batch, out.realtime, out.unit = _priced(model, g.tokens, readable, price)
    return out


def _priced(model: str, tokens: list[int], prefix: int, price: Price) -> tuple[float | None, float | None, str]:
    """(batch, real time, unit): None and UNPRICED for both when any line has no price."""
    batch = realtime = 0.0
    unit = ""
    for i, n in enumerate(tokens):
        shared = min(prefix, n)
        details = {"cache_creation_input_tokens": shared} if i == 0 else {"cached_tokens": shared,
                                                                          "cache_type": "ephemeral"}
        as_batch = price(model, {"prompt_tokens": n, "completion_tokens": 0}, True)
        one = price(model, {"prompt_tokens": n, "completion_tokens": 0, "prompt_tokens_details": details}, False)
        if as_batch is None or one is None or as_batch.amount is None or one.amount is None:
            return None, None, UNPRICED
        batch, realtime, unit = batch + as_batch.amount, realtime + one.amount, one.unit
    return batch, realtime, unit
