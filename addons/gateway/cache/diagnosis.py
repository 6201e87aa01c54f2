"""Cache diagnostics a client asked for, in no dialect's words (api/messages/diagnostics.py and
api/responses/diagnostics.py give them Anthropic's and OpenAI's shapes): this request's prefix compared with the
one of an earlier response the client names, from the cache doctor's own memory (memory.py), within the
client's tenant. The comparison is of structure, as both vendors define theirs, made when the answer begins;
what Qwen did (its numbers contradicting the structure: the same prefix, and no read) is said at the answer's
end, where the vendors' own diagnostics cannot say it.

The endpoint says what its client asked (`Asked`, on the exchange): to compare with a response, and whether
this response is kept under its id for a later request to name (Anthropic keeps only the requests that carry
`diagnostics`; OpenAI any recent response)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from ..cache_turn import Asked, Comparison, QwenDid
from .compare import Turn, Verdict, closest, diagnose, first_change, resumes_at
from .memory import Memory
from .prints_forms import of_body
from .prints_sent import of_sent
from .shared import SharedTurns, recall_args

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..storage.pg import Database
    from ..providers import Leg
    from .prints import Print

FIRST, SAME, CHANGED, NOT_FOUND, UNAVAILABLE = "first", "same", "changed", "not_found", "unavailable"
# the doctor's causes where the structure was the same, as the clients are told what Qwen did
QWEN_DID = {"expiry": "expired", "unexplained": "evicted", "account": "other_account", "lookback": "lookback"}
# A turn with more messages than this to print is printed by a worker thread (as a Responses input of more items
# than api/responses/endpoints.OFF_LOOP_ITEMS is translated): its encoding would hold the event loop
OFF_LOOP_MESSAGES = 256


class Diagnoser:
    """The one per gateway (the wiring's), sharing the doctor's memory; `catch_up` tells the observers that run
    after an answer what has finished (the doctor among them), so a response answered a moment ago is found."""

    def __init__(self, memory: Memory | None = None, catch_up: Callable[[], None] = lambda: None) -> None:
        self.memory = memory if memory is not None else Memory()
        self.catch_up = catch_up
        self.shared: SharedTurns | None = None  # the team's gateways' turns, on qwen_state_url (shared.py)

    def share(self, db: Database | None) -> None:
        """Turns shared with the gateways of `db` (qwen_state_url), or kept by this gateway alone (None)."""
        if self.shared is not None:
            self.shared.close()
        self.shared = SharedTurns(db) if db is not None else None
        if self.shared is not None:
            self.shared.start()

    async def recall(self, ex: Exchange) -> None:
        """A check before upstream: what the team's other gateways know of this turn's conversation and of the
        response it names, into this gateway's memory (shared.py; nothing without a shared database)."""
        if self.shared is not None and (ex.conversation is not None or ex.cache_ask is not None):
            await self.shared.recall(self.memory, *recall_args(ex))

    def begin(self, ex: Exchange) -> None:
        """As the request goes upstream (the cache doctor's `upstream_request`): a turn with more than
        OFF_LOOP_MESSAGES messages to print (all of them, or those after what the conversation's newest turn left
        to reuse) is printed by a worker thread meanwhile (`ex.cache_print`); the observers that record it
        wait for it (dispatch.py). Any other is printed when it is read, on the loop."""
        ex.cache_print = None
        body, leg = ex.attempt.body, ex.attempt.leg
        if not isinstance(body, dict):
            return
        messages = body.get("input" if leg.passthrough and "messages" not in body else "messages")
        if not isinstance(messages, list) or len(messages) <= OFF_LOOP_MESSAGES:
            return
        before = None if leg.passthrough or ex.conversation is None else \
            self.memory.newest(ex.key.name, ex.conversation.key)  # what a chat turn's print reuses
        reused = before.reuse.messages - 1 if before is not None and before.reuse is not None else 0
        if len(messages) - reused <= OFF_LOOP_MESSAGES:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a script, a test): printed when read
            return
        ex.cache_print = loop.run_in_executor(None, _made, body, leg, ex.attempt.sent, before, ex.cache_ask is not None)

    def turn(self, ex: Exchange) -> Turn | None:
        """The exchange's turn: its prefix as it went upstream, fingerprinted once (None: nothing went)."""
        asked = ex.cache_ask
        if asked is not None and asked.seen is not None:
            return cast(Turn, asked.seen)  # the exchange holds it as a Prefix: this doctor's Turn, set below
        body = ex.attempt.body
        if not isinstance(body, dict):
            return None
        printing, attempt, tenant = ex.cache_print, ex.attempt, ex.key.name
        if printing is not None and printing.done() and not printing.cancelled() and printing.exception() is None:
            found = printing.result()  # made by a worker thread (begin)
        else:  # the conversation's previous turn (Memory.newest, read without its call): what this one repeats of
            # it is not read again
            kept = self.memory.conversations.get((tenant, ex.conversation.key)) if ex.conversation is not None \
                else None
            before = kept.turns[-1].print if kept is not None and kept.turns else None
            leg = attempt.leg  # as _made, without its call
            found = of_body(body, leg.suffix) if leg.passthrough else of_sent(body, attempt.sent, before,
                                                                                 asked is not None)
        cred = attempt.cred  # Attempt.account, read without its property's call
        seen = Turn(found, ex.started_at, cred.account if cred else "", attempt.route, found.lifetime, tenant)
        if asked is not None:
            asked.seen = seen
        return seen

    def compare(self, ex: Exchange) -> Comparison | None:
        """The comparison the client asked for (None: it asked none), made once, when its answer begins."""
        asked = ex.cache_ask
        if asked is None or not asked.compare:
            return None
        if asked.comparison is None:
            asked.comparison = self._compare(ex, asked)
        return asked.comparison

    def answered(self, ex: Exchange, answer_id: str) -> None:
        """The response's id, known as its answer begins: kept now when the client asked (its next request may
        name it at once), else by the doctor with the turn."""
        asked = ex.cache_ask
        if asked is None or not asked.keep:
            return
        asked.answer_id = answer_id
        if asked.compare and (seen := self.turn(ex)) is not None:
            self.memory.keep_id(ex.key.name, answer_id, seen)

    def verdict(self, ex: Exchange, prompt: int, cached: int, written: int) -> Verdict | None:
        """At the answer's end, from Qwen's usage: the cache doctor's own verdict against the compared response (its
        `lost` the figure the doctor records), so the client is told the doctor's number. None: nothing compared,
        or that response's usage unknown."""
        comparison = ex.cache_ask.comparison if ex.cache_ask is not None else None
        if comparison is None or comparison.against is None:
            return None
        was, now = cast(Turn, comparison.against), self.turn(ex)  # a Turn of this doctor's memory (_compare)
        if was.prompt is None:
            self.catch_up()
        if was.prompt is None or now is None:
            return None
        now.prompt, now.cached, now.written = prompt, cached, written
        return diagnose(was, now)

    def qwen_did(self, ex: Exchange, prompt: int, cached: int, written: int) -> QwenDid | None:
        """At the answer's end: where the structure was the compared response's and Qwen read less than that
        response left in its cache, what Qwen did (or the request's shape did: `lookback`). None otherwise."""
        comparison = ex.cache_ask.comparison if ex.cache_ask is not None else None
        if comparison is None or comparison.outcome != SAME:
            return None
        verdict = self.verdict(ex, prompt, cached, written)
        if verdict is None or comparison.against is None or (kind := QWEN_DID.get(verdict.cause or "")) is None:
            return None
        return QwenDid(kind, verdict.lost, comparison.against.lifetime)

    def missed(self, ex: Exchange, usage_known: tuple[int, int, int] | None) -> int:
        """A changed prefix's tokens lost, as the client is told: the doctor's figure where Qwen's usage is known
        (`usage_known`: prompt, read, written) and the doctor names the miss, else the comparison's estimate of
        it (the doctor names none where the implicit cache read no less than the compared turn: it promises
        nothing, but the client asked what the change costs)."""
        comparison = ex.cache_ask.comparison if ex.cache_ask is not None else None
        if comparison is None:
            return 0
        verdict = self.verdict(ex, *usage_known) if usage_known is not None else None
        return verdict.lost if verdict is not None and verdict.cause is not None else comparison.missed

    def read_before(self, ex: Exchange) -> int | None:
        """What of the exchange's prompt Qwen's explicit cache held when it was sent, as the conversation's earlier
        turns left it (the doctor's memory): a stream that broke before Qwen's usage read that much and wrote the
        rest of what it stored (turn/answer_so_far.py). 0: nothing held (the turn before on another account,
        expired, without markers, or none); None: nothing to go by (no conversation, no markers)."""
        if ex.conversation is None:
            return None
        self.catch_up()  # the turn before, answered a moment ago
        now = self.turn(ex)
        if now is None or not now.marks:
            return None
        kept = self.memory.kept(ex.conversation.key, ex.key.name, now, by_opening=ex.conversation.source == "opening")
        was = closest(kept.turns, now)
        if was is None or not was.explicit or was.account != now.account or now.at - was.at > was.lifetime:
            return 0
        change = first_change(was, now)
        resume = resumes_at(was, now, now.blocks if change is None else change.index)
        return min(was.tokens_before(resume), was.cached + was.written) if resume else 0

    def _compare(self, ex: Exchange, asked: Asked) -> Comparison:
        if asked.compare_to is None:
            return Comparison(FIRST)
        now = self.turn(ex)
        if now is None:
            return Comparison(UNAVAILABLE)
        was = self.memory.find(ex.key.name, asked.compare_to)
        if was is None:
            self.catch_up()  # the doctor may not have kept it yet
            was = self.memory.find(ex.key.name, asked.compare_to)
        if was is None:
            return Comparison(NOT_FOUND)
        change = first_change(was, now)
        if change is None:
            same = was.print.settings == now.print.settings
            return Comparison(SAME if same else UNAVAILABLE, against=was)
        cause = change.cause
        if cause == "model" and (now.route or was.route):
            cause = "image" if "images" in (now.route, was.route) else "route"
        resume = resumes_at(was, now, change.index)  # Qwen goes on only from a prefix it stored, not the change
        resume = change.index if resume is None else resume
        reusable = was.tokens_before(resume)
        # what the doctor will find lost (compare.diagnose): what that turn left in the cache, up to this prompt's
        # length, past what Qwen reads again; this prompt's tokens at that turn's ratio (4 bytes a token unknown)
        ratio = (was.prompt / was.print.size) if was.prompt and was.print.size else 0.25
        held = now.print.size * ratio
        if was.prompt is not None:
            held = min(held, was.cached + was.written if was.explicit else was.prompt)
        return Comparison(CHANGED, cause, max(0, round(held) - reusable), reusable, was)


def _made(body: dict, leg: Leg, sent: bytes, before: Print | None, settings: bool) -> Print:
    """A request's print as it went upstream: a pass-through's in its own form, the chat form's from the bytes sent
    (`before` reused where it repeats it); `settings` read too where a client may compare them. On the loop, or
    on a worker thread (`begin`): it reads only what it is given."""
    return of_body(body, leg.suffix) if leg.passthrough else of_sent(body, sent, before, settings)
