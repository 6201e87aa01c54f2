"""The cache doctor: for every conversation (`ex.conversation`, which the pool keeps on one account), each turn's
share of Qwen's prompt cache (read, written, missed, as Qwen's usage says) and, when a turn read less than the
turn it continues left in the cache, why (cache/compare.py: another account, the lifetime passed, the prefix's
first change, or Qwen's own doing).

An observer that never changes the flow's request or answer. It reads the request that went upstream
(`ex.attempt.body`: the chat form, or a pass-through's own) and Qwen's usage, and leaves its verdict on the
exchange (`ex.result.cache`: the ledger's row and the metrics read it, after it) and, under mitmweb or with a
flow file, on the flow's record (`flow.metadata["qwen"]["cache"]`, the "Qwen cache doctor" view) and in its
comment — only then does it run at once, in the `response` hook; otherwise after the answer went out, with the
other recording observers. What it keeps is the cache package's memory (cache/memory.py), shared with the
clients' diagnostics (cache/diagnosis.py): hashes and sizes, never prompt text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mitmproxy import ctx

from ..cache.compare import CAUSES, Turn, Verdict, closest, diagnose, first_change, grew, read_all
from ..cache.diagnosis import Diagnoser
from ..cache.prints import MID_SYSTEM, MODEL, SYSTEM, TOOL
from ..cache.prints_forms import CHAT, places
from ..cache_usage import EXPLICIT, read as read_cache
from ..cache_turn import CacheTurn
from ..observer import Observer
from ..pricing.prices import PriceTable
from ..turn import outcome

if TYPE_CHECKING:
    from mitmproxy import http

    from ..exchange import Exchange
    from ..models.live import LiveModels
    from ..settings.config import Config

AROUND = 2  # blocks shown on either side of the first change
# Qwen's caches keep no prefix shorter ("Context cache": 256 tokens implicit, 1,024 explicit): a shorter prompt
# neither reads nor leaves anything there, so the doctor has nothing to say of it, nor keeps it
SMALLEST = 256
KIND_NAMES = {MODEL: "model", SYSTEM: "system", TOOL: "tool", MID_SYSTEM: "system (mid)"}


class CacheDoctor(Observer):
    at_once = False  # at once only where its verdict is shown: mitmweb's comment, a flow file (`running`)

    def __init__(self, diagnoser: Diagnoser | None = None) -> None:
        self.diagnoser = diagnoser if diagnoser is not None else Diagnoser()
        self.memory = self.diagnoser.memory
        self.prices = PriceTable()
        self.lists: LiveModels | None = None  # each account's own model list from Qwen: its prices first
        self.shown = True  # the verdict's line and the flow's record: only for mitmweb and flow files

    def configure(self, config: Config) -> None:
        self.prices = config.prices
        self.lists = config.models.accounts

    def running(self) -> None:
        self.shown = ctx.master.addons.get("view") is not None or bool(getattr(ctx.options, "save_stream_file", None))
        self.at_once = self.shown

    def upstream_request(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        if ex.conversation is not None or ex.cache_ask is not None:  # a turn it will judge or keep
            self.diagnoser.begin(ex)  # a long one printed by a worker thread meanwhile

    def finished(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        result, conversation = ex.result, ex.conversation
        usage = result.usage
        prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None  # observer.usage_int, no call
        if not isinstance(prompt, int) or prompt.__class__ is bool:
            return
        error = result.error  # observer.failed, no call: a turn counted is read in ~150 Python calls and operations
        status = result.status if result.status is not None else error.status if error is not None else None
        if error is not None or result.stream_error or status is None or status >= 400:
            return
        if not self.at_once and ex.cache_print is not None and not ex.cache_print.done():
            return  # not made within dispatch.PRINT_WAIT_S, or the gateway stops: not made again here, not judged
        if conversation is None or prompt < SMALLEST:
            self._keep_only(ex, prompt)
            return
        now = self.diagnoser.turn(ex)
        if now is None:
            return
        cached, written, _, kind = read_cache(usage)
        now.prompt = prompt
        now.cached = cached or 0
        now.written = written or 0
        now.explicit = kind == EXPLICIT
        kept = self.memory.kept(conversation.key, ex.key.name, now, conversation.source == "opening")  # by_opening
        turns, was, grown = kept.turns, None, None
        verdict: Verdict | None = None  # None: it grew from the newest turn and read all that turn left (no cause)
        if turns and (was := turns[-1]).prompt is not None and grew(was, now):  # the common case, in fewer calls
            grown = was.print
            if not read_all(was, now) or self.shown:
                verdict = diagnose(was, now, grown=True)
        else:
            was = closest(turns, now)
            verdict = diagnose(was, now)
        self.memory.add(kept, now, grown)
        asked = ex.cache_ask
        named = asked.answer_id if asked is not None and asked.keep and asked.answer_id else None
        if named:
            self.memory.keep_id(ex.key.name, named, now)
        if self.diagnoser.shared is not None:  # the team's other gateways: the turn's number, its print, its id
            self.diagnoser.shared.put(kept.key, now, named)
        cause, lost = (None, 0) if verdict is None else (verdict.cause, verdict.lost)
        # its fields in order, none by keyword: a keyword cost ~1,200 instructions more
        cache = CacheTurn(kept.key, now.turn, prompt, now.cached, now.written, cause, lost, None, "", None,
                          now.lifetime if now.explicit else None)
        if cause is not None:
            cache.lost_usd = self._lost_usd(ex, lost)
        outcome.cache_judged(ex, cache)
        if self.shown and verdict is not None and isinstance(meta := flow.metadata.get("qwen"), dict):
            self._show(ex, cache, verdict, was, now, meta)

    def _keep_only(self, ex: Exchange, prompt: int) -> None:
        """A response a client may name in a later request's diagnostics, kept under its id however short."""
        asked = ex.cache_ask
        if asked is not None and asked.keep and asked.answer_id and (now := self.diagnoser.turn(ex)) is not None:
            now.prompt = prompt
            self.memory.keep_id(ex.key.name, asked.answer_id, now)
            if self.diagnoser.shared is not None:  # no conversation's turn: found by its id alone
                self.diagnoser.shared.put(f"id:{asked.answer_id}", now, asked.answer_id)

    def _show(self, ex: Exchange, cache: CacheTurn, verdict: Verdict, was: Turn | None, now: Turn, meta: dict) -> None:
        """The verdict's line and the blocks around the change, for mitmweb's comment and view."""
        if verdict.cause is not None and was is not None:
            leg = ex.attempt.leg
            named = places(ex.attempt.body or {}, leg.suffix if leg.passthrough else CHAT)
            change = first_change(was, now, named)
            if change is not None:
                verdict.change = change
                cache.diff = _diff(was, now, named, verdict)
        cache.line = line(cache, verdict)
        meta["cache"] = {"conversation": cache.conversation, "turn": cache.turn, "prompt": cache.prompt,
                         "read": cache.read, "written": cache.written, "cause": cache.cause,
                         "against": verdict.against, "lost": cache.lost, "lost_usd": cache.lost_usd,
                         "verdict": cache.line, "diff": cache.diff}

    def _lost_usd(self, ex: Exchange, lost: int) -> float | None:
        """What the lost tokens cost above reading them from the cache, priced as the settlement priced the request
        (turn/settlement.py: the account's own list first, then the table; the prompt's tier); None: unknown."""
        cred, usage = ex.attempt.cred, ex.result.usage
        if cred is None or not lost or not isinstance(usage, dict):
            return None
        details = usage.get("prompt_tokens_details")
        kind = details.get("cache_type") if isinstance(details, dict) else None
        listed = self.lists.listed_tiers(cred.account, ex.attempt.model) if self.lists is not None else None
        return self.prices.saved(getattr(cred, "billing", ""), ex.attempt.model, {
            "prompt_tokens": usage.get("prompt_tokens"),
            "prompt_tokens_details": {"cached_tokens": lost, **({"cache_type": kind} if kind else {})}}, listed=listed)


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


def _digest(turn: Turn, k: int) -> int | None:
    return int.from_bytes(turn.print.raw[8 * k:8 * k + 8], "little", signed=True) if k < turn.blocks else None


def _diff(was: Turn, now: Turn, named: list[str], verdict: Verdict) -> dict | None:
    """The blocks around the first change: their kind, place in this request (`named`), both turns' hashes."""
    change = verdict.change
    if change is None:
        return None
    i = change.index
    rows = []
    for k in range(max(0, i - AROUND), min(max(was.blocks, now.blocks), i + AROUND + 1)):
        before, after = _digest(was, k), _digest(now, k)
        kind = now.print.kinds[k] if k < now.blocks else was.print.kinds[k]
        rows.append({"block": k, "kind": KIND_NAMES.get(kind, "message"), "where": named[k] if k < len(named) else "-",
                     "was": _short(before), "now": _short(after), "same": before == after})
    return {"block": i, "where": change.where, "cause": change.cause, "against": verdict.against,
            "blocks_was": was.blocks, "blocks_now": now.blocks, "blocks": rows}
