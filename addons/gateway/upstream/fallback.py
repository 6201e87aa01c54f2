"""The retry policy's last way back (upstream/retry.py's `RetryPolicy` takes it in): a request the upstream refused for
its model goes to the next model of the group the admin declared for it (`qwen_fallbacks`, models/fallbacks.py),
before the client hears anything — a stream's refusal comes before its first byte (first_event.py). A refusal of
the request itself (its parameters, the key, a rate or a budget) is no fallback's; every model refused: the first
refusal, as the client would have had it."""

from __future__ import annotations

from collections.abc import Collection

from .. import errors
from ..accounts import Credential
from ..errors import GatewayError, UpstreamError
from ..exchange import Exchange, Refusal, Retry, RetryReason
from ..models.fallbacks import NO_ACCESS, NOT_FOUND, NOT_SERVED, WINDOW, Fallbacks, choose
from ..models.suggestions import NOT_FOUND as MODEL_NOT_FOUND
from ..turn.context_overflow import upstream_limit


def refused_for_its_model(err: UpstreamError) -> str | None:
    """Why the upstream refused the request for its model (the flow's words); None: it refused something else."""
    if err.kind == errors.CONTEXT:
        return WINDOW
    if err.code == MODEL_NOT_FOUND:
        return NOT_SERVED if err.kind == errors.UNLISTED else NOT_FOUND
    if err.param == "model" and err.kind in (errors.DENIED, errors.UNLISTED):  # AccessDenied.Unpurchased, …
        return NO_ACCESS
    return None


def needed(ex: Exchange, err: UpstreamError) -> int | None:
    """The tokens a fallback's window must hold: the server's count of the prompt, else the gateway's, else one more
    than the window the refusal named; None: not known."""
    if err.counted is not None:
        return err.counted[0]
    if ex.count.tokens is not None:
        return ex.count.tokens
    limit = upstream_limit(err.message)
    return limit + 1 if limit is not None else None


class FallbackWay:
    fallbacks: Fallbacks

    async def acquire(self, ex: Exchange, exclude: Collection[str] = ()) -> Credential:
        raise NotImplementedError  # RetryPolicy's

    async def fell_back(self, ex: Exchange, err: UpstreamError, refused: GatewayError) -> Credential:
        """The credential for the group's next model, its choice noted on the flow; raises `refused` when `err` is no
        refusal of the model or no group names it, and the first model's refusal when every fallback was refused."""
        why = refused_for_its_model(err)
        first = ex.attempt.refusals[0].model if ex.attempt.refusals else ex.attempt.model
        group = self.fallbacks.group(first) if self.fallbacks else None
        if why is None or group is None:
            raise refused
        model, account = ex.attempt.model, ex.account
        ex.attempt.refusals.append(Refusal(model, why, refused, len(ex.attempt.tried)))
        nxt, passed = choose(group, [r.model for r in ex.attempt.refusals], why=why,
                             needed=needed(ex, err) if why == WINDOW else None)
        ex.notes.extend(passed)
        if nxt is None:
            ex.notes.append(f"{model} refused on {account} ({why}): every fallback of qwen_fallbacks {group} refused "
                            "or passed over: the first refusal answered")
            raise ex.attempt.refusals[0].error
        ex.notes.append(f"{model} refused on {account} ({why}): fell back to {nxt} (qwen_fallbacks {group})")
        ex.attempt.fallback, ex.attempt.counted = nxt, None
        ex.attempt.retries.append(Retry(RetryReason.FELL_BACK, account))
        try:  # any account (its binding's): one whose own list leaves the model out sends it on (account_lists.py)
            return await self.acquire(ex)
        except GatewayError:
            ex.notes.append(f"no account can take {nxt}: the first refusal answered")
            raise ex.attempt.refusals[0].error from None
