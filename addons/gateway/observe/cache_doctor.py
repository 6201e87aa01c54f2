"""The cache doctor: for every conversation (`ex.conversation`, which the pool keeps on one account), each turn's
share of Qwen's prompt cache (read, written, missed, as Qwen's usage says) and, when a turn missed more than the
turn it continues, what changed in the prompt's prefix (observe/prefix_diff.py: the first differing block and
its kind, another account, the five-minute expiry).

An observer that never changes the flow's request or answer: `at_once` (in the `response` hook, before mitmweb's
comment is written and the flow saved) it reads the request that went upstream (`ex.attempt.body`, the pivot's
form) and Qwen's usage, and leaves its verdict on the exchange (`ex.result.cache`: the comment, the ledger's row
and the metrics read it) and on the flow's record (`flow.metadata["qwen"]["cache"]`, the "Qwen cache doctor"
view). What it keeps is bounded and holds no prompt text: the newest CONVERSATIONS conversations (least recently
seen dropped first), each with its turn count and its last TURNS_KEPT turns' block hashes and usage.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import TYPE_CHECKING

from mitmproxy import ctx

from ..cache_turn import CacheTurn
from ..observer import Observer, cache_write_tokens, cached_tokens, failed, usage_int
from ..pricing.prices import PriceTable
from .prefix_diff import CAUSES, MID_SYSTEM, MODEL, SYSTEM, TOOL, Prefix, Seen, Verdict, closest, diagnose, \
    fingerprint, places

if TYPE_CHECKING:
    from mitmproxy import http

    from ..exchange import Exchange
    from ..settings.config import Config

CONVERSATIONS = 4096  # conversations kept (each a few KB: 8 bytes a block of its last turns)
TURNS_KEPT = 4  # turns kept per conversation: the turn a request continues is the closest of them
AROUND = 2  # blocks shown on either side of the first change
KIND_NAMES = {MODEL: "model", SYSTEM: "system", TOOL: "tool", MID_SYSTEM: "system (mid)"}


class Kept:
    __slots__ = ("count", "turns")

    def __init__(self) -> None:
        self.count = 0
        self.turns: deque[Seen] = deque(maxlen=TURNS_KEPT)


class CacheDoctor(Observer):
    at_once = True  # its verdict is in the comment (FlowAnnotator, after it) and the flow file

    def __init__(self) -> None:
        self.conversations: OrderedDict[str, Kept] = OrderedDict()
        self.prices = PriceTable()
        self.shown = True  # the verdict's line and the flow's record: only for mitmweb and flow files

    def configure(self, config: Config) -> None:
        self.prices = config.prices

    def running(self) -> None:
        self.shown = ctx.master.addons.get("view") is not None or bool(getattr(ctx.options, "save_stream_file", None))

    def finished(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        usage, body, conversation = ex.result.usage, ex.attempt.body, ex.conversation
        prompt = usage_int(usage, "prompt_tokens")
        if conversation is None or not isinstance(body, dict) or prompt is None or failed(ex):
            return
        kept = self.conversations.get(conversation.key)
        if kept is None:
            kept = self.conversations[conversation.key] = Kept()
            if len(self.conversations) > CONVERSATIONS:
                self.conversations.popitem(last=False)
        else:
            self.conversations.move_to_end(conversation.key)
        kept.count += 1
        cached = cached_tokens(usage) or 0
        now = Seen(kept.count, ex.started_at, ex.account, prompt, cached, fingerprint(body))
        was = closest(kept.turns, now.prefix)
        verdict = diagnose(was, now)  # the change's place named below, only when it is shown
        kept.turns.append(now)
        cache = CacheTurn(conversation.key, now.turn, prompt, cached, cache_write_tokens(usage) or 0,
                          verdict.cause, verdict.lost)
        if verdict.cause is not None:
            cache.lost_usd = self._lost_usd(ex, verdict.lost)
        ex.result.cache = cache
        meta = flow.metadata.get("qwen")
        if self.shown and isinstance(meta, dict):
            change = verdict.change
            if verdict.cause is not None and change is not None and was is not None:
                named = places(body)
                change.where = named[change.index] if change.index < len(named) else change.where
                cache.diff = _diff(was.prefix, now.prefix, named, verdict)
            cache.line = line(cache, verdict)
            meta["cache"] = {"conversation": cache.conversation, "turn": cache.turn, "prompt": prompt, "read": cached,
                             "written": cache.written, "cause": cache.cause, "against": verdict.against,
                             "lost": cache.lost, "lost_usd": cache.lost_usd, "verdict": cache.line,
                             "diff": cache.diff}

    def _lost_usd(self, ex: Exchange, lost: int) -> float | None:
        """What the lost tokens cost above reading them from the cache (the price table's cached price)."""
        cred, usage = ex.attempt.cred, ex.result.usage
        if cred is None or not lost or not isinstance(usage, dict):
            return None
        details = usage.get("prompt_tokens_details")
        kind = details.get("cache_type") if isinstance(details, dict) else None
        return self.prices.saved(getattr(cred, "billing", ""), ex.attempt.model, {
            "prompt_tokens": usage.get("prompt_tokens"),
            "prompt_tokens_details": {"cached_tokens": lost, **({"cache_type": kind} if kind else {})}})


def line(cache: CacheTurn, verdict: Verdict) -> str:
    """The one-line verdict: the turn's share, and the miss with its cause and place."""
    share = f"{round(cache.read * 100 / cache.prompt)}%" if cache.prompt else "-"
    out = f"cache: turn {cache.turn} read {cache.read:,} of {cache.prompt:,} prompt tokens ({share})"
    if cache.cause is not None:
        out += f" · lost {cache.lost:,} vs turn {verdict.against}: {CAUSES[cache.cause]}"
        if verdict.change is not None and cache.cause == verdict.change.cause:
            out += f" ({verdict.change.where})"
    return out


def _short(digest: int | None) -> str:
    return "" if digest is None else f"{digest & 0xFFFFFFFF:08x}"


def _diff(was: Prefix, now: Prefix, named: list[str], verdict: Verdict) -> dict | None:
    """The blocks around the first change: their kind, place in this request (`named`), both turns' hashes."""
    change = verdict.change
    if change is None:
        return None
    i = change.index
    rows = []
    for k in range(max(0, i - AROUND), min(max(len(was.digests), len(now.digests)), i + AROUND + 1)):
        before = was.digests[k] if k < len(was.digests) else None
        after = now.digests[k] if k < len(now.digests) else None
        kind = now.kinds[k] if k < len(now.kinds) else was.kinds[k]
        rows.append({"block": k, "kind": KIND_NAMES.get(kind, "message"), "where": named[k] if k < len(named) else "-",
                     "was": _short(before), "now": _short(after), "same": before == after})
    return {"block": i, "where": change.where, "cause": change.cause, "against": verdict.against,
            "blocks_was": len(was.digests), "blocks_now": len(now.digests), "blocks": rows}
