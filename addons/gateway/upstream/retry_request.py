"""The retry policy's ways back that mend the request itself (upstream/retry.py's `RetryPolicy` takes them in): what
the model or its server said of it — its own count and window (a cap sent again within them), a lesson learned once
(a thinking switch, a template's rule, a stream-only model, a range), the oldest messages dropped with the client's
leave, a new Qwen Chat chat. Each returns the credential to send again with (the same), or None."""

from __future__ import annotations

import asyncio

from .. import errors
from ..accounts import Credential
from ..errors import UpstreamError
from ..exchange import Exchange, Retry, RetryReason
from ..models.learned import INPUT, LearnedFacts
from ..turn.context_overflow import upstream_limit
from ..tokens import truncate_chat


class RequestWays:
    learned: LearnedFacts

    async def refitted(self, ex: Exchange, err: UpstreamError) -> Credential | None:
        """A server whose prompt and answer share one window refused the output cap, saying its own count of the
        prompt and the window: sent again once with the cap those leave (the body builder reads `ex.attempt.counted`).
        Never a prompt too long: that one is a CONTEXT refusal."""
        if err.counted is None or err.kind != errors.CLIENT or ex.attempt.counted == err.counted:
            return None
        prompt, window = ex.attempt.counted = err.counted
        return again(ex, RetryReason.CAPPED, f"the server counts {prompt:,} prompt tokens of its {window:,}-token "
                                              "window: sent again with the output cap the window leaves")

    async def relearned(self, ex: Exchange, err: UpstreamError) -> Credential | None:
        """A 400 in Qwen's own words that teaches something about the model (its thinking knobs, a range it
        holds, that it answers streams only), learned once and sent again with the same credential; an input
        length is learned for the next request (this one goes on to the context error). A refusal in a wording
        no reader knows is counted and said on the flow."""
        model, cred = ex.attempt.model, ex.attempt.cred
        if err.kind not in (errors.CLIENT, errors.CONTEXT) or not model or cred is None:
            return None
        upstream = ex.attempt.upstream
        if upstream is None:
            return None
        reading = upstream.lesson(err.message)
        if reading is None:
            if err.kind == errors.CLIENT and not upstream.words_known(err.message):
                self.learned.unknown[model] = self.learned.unknown.get(model, 0) + 1
                ex.notes.append(f"Qwen refused in words the gateway does not know (counted): “{err.message[:200]}”")
            return None
        carried = " ".join((ex.attempt.url, *ex.attempt.headers.values()))  # headers as sent, the key redacted
        why = upstream.unlearnable(reading, ex.attempt.body or {}, model, carried)
        if why is not None:
            ex.notes.append(f"not learned from Qwen's “{reading.text}”: {why}")
            return None
        if reading.thinking is not None and self.learned.thinking.get(model) != reading.thinking:
            self.learned.thinking[model] = reading.thinking  # qwen-code learns "thinking is mandatory" so
            return again(ex, RetryReason.THINKING, f"{model} refused its thinking settings: sent again as "
                                                    f"{reading.thinking.value}")
        if reading.system_first and model not in self.learned.system_first:
            self.learned.system_first.add(model)
            return again(ex, RetryReason.TEMPLATE, f"{model}'s chat template takes system text only at the "
                                                    "beginning: sent again with one leading system message")
        if reading.stream_only and model not in self.learned.stream_only:
            self.learned.stream_only.add(model)
            return again(ex, RetryReason.STREAM_ONLY, f"{model} answers streams only: sent again as a stream")
        if reading.fact is None or reading.bound is None or self.learned.value(model, reading.fact) == reading.bound \
                or retried(ex, RetryReason.CAPPED) >= 2:
            return None  # a relation (the gateway keeps them: relations.py), or a fact already known
        found = self.learned.learn(model, reading.fact, reading.bound)
        if found is None:
            return None
        said = f"{model}: {reading.param} at most {reading.bound:,} ({found.said()})"
        if reading.fact == INPUT:
            ex.notes.append(said)
            return None
        return again(ex, RetryReason.CAPPED, f"{said}: sent again within it")

    async def truncated(self, ex: Exchange, err: UpstreamError) -> Credential | None:
        """Over Qwen's context with the client's leave to drop the oldest messages: dropped, sent again once."""
        if err.kind != errors.CONTEXT or not ex.truncate_oldest or retried(ex, RetryReason.TRUNCATED):
            return None
        if not await dropped_oldest(ex, err):
            return None
        return again(ex, RetryReason.TRUNCATED)

    async def new_chat(self, ex: Exchange, err: UpstreamError) -> Credential | None:
        """A pinned Qwen Chat chat refused the turn (stale parent): sent again in a new chat, once."""
        if err.kind != errors.STALE or retried(ex, RetryReason.NEW_CHAT):
            return None
        return again(ex, RetryReason.NEW_CHAT, f"{err.message}: sent again in a new chat")


# Qwen counts with its own tokenizer: the gateway's estimate aims this far under the limit Qwen named.
TRUNCATE_SHARE = 0.9


async def dropped_oldest(ex: Exchange, err: UpstreamError) -> bool:
    """The Responses API's `truncation: "auto"` when Qwen says the input is over its limit: the oldest
    messages dropped until the estimate fits (the limit from Qwen's message). False: nothing to drop."""
    named = upstream_limit(err.message)
    if named is None or not isinstance(ex.chat_body, dict):
        return False
    fitted = await asyncio.to_thread(truncate_chat, ex.chat_body, int(named * TRUNCATE_SHARE))
    if fitted is None or not fitted[1]:
        return False
    ex.chat_body, dropped, _ = fitted
    ex.notes.append(f"truncation auto: Qwen's limit is {named} tokens: the {dropped} oldest messages "
                    "dropped, sent again")
    return True


def again(ex: Exchange, reason: RetryReason, note: str | None = None) -> Credential:
    """The same credential again, the reason recorded (and said on the flow)."""
    assert ex.attempt.cred is not None
    if note:
        ex.notes.append(note)
    ex.attempt.retries.append(Retry(reason, ex.account))
    return ex.attempt.cred


def retried(ex: Exchange, reason: RetryReason) -> int:
    return sum(1 for r in ex.attempt.retries if r.reason is reason)
