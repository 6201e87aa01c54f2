"""What to do when Qwen refuses a request: refresh, rotate, wait, or give up — decided before the client
has seen a byte, so a retried answer streams like any first attempt.

Also the one place that turns "no account can take this" into the OpenAI error a client expects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from typing import TypeVar

from .. import errors
from ..accounts import KEY, AccountUnavailable, Credential, NotCapable, Outcome, Pool
from ..errors import NO_RETRY, GatewayError, UpstreamError, unavailable
from ..exchange import Exchange, Retry, RetryReason, note
from ..models.bindings import Bindings
from ..models.fallbacks import Fallbacks
from .fallback import FallbackWay
from .retry_request import RequestWays, retried
from ..models.learned import LearnedFacts
from ..turn.context_overflow import ContextOverflow, over_upstream_limit, param_of

T = TypeVar("T")
# Throttling retries inside one client request: a short wait is better than an error.
MAX_THROTTLE_RETRIES = 2
MAX_THROTTLE_WAIT = 10.0
_POOL_OUTCOME = {errors.AUTH: Outcome.AUTH, errors.QUOTA: Outcome.QUOTA, errors.THROTTLE: Outcome.THROTTLE,
                 errors.PUNISHED: Outcome.PUNISHED}  # an UNREACHABLE given up (no other account) changes nothing


class RetryPolicy(RequestWays, FallbackWay):
    def __init__(self, pool: Pool | None) -> None:
        self.pool = pool
        # what Qwen's 400s taught about models (each upstream reads its own: `lesson`); the state folder's (wiring.py) once configured
        self.learned = LearnedFacts()
        self.bindings = Bindings()  # which accounts a request may use (qwen_account_bindings; wiring.py)
        self.fallbacks = Fallbacks()  # what a model refused may fall back to (qwen_fallbacks; wiring.py)

    async def acquire(self, ex: Exchange, exclude: Collection[str] = ()) -> Credential:
        """A credential for this exchange (the endpoint's capability included), recorded as tried."""
        if self.pool is None:
            raise GatewayError(503, "The gateway has no account pool configured.", code="no_accounts",
                               headers=NO_RETRY)
        assert ex.endpoint is not None
        model = ex.attempt.fallback or ex.requested_model or ""  # a fallback group's model is bound as asked for
        bound = self.bindings.find(key=ex.key.name or "", model=model, dialect=ex.dialect,
                                   agent=ex.client.user_agent) if self.bindings else None
        try:
            if bound is None:
                cred = await self.pool.acquire(exclude, capability=ex.endpoint.capability,
                                               conversation=ex.conversation)
            else:
                if not ex.attempt.tried:
                    note(ex.notes, f"bound to {', '.join(bound.accounts)} (qwen_account_bindings {bound})")
                cred = await self.pool.acquire(exclude, capability=ex.endpoint.capability,
                                               conversation=ex.conversation, only=bound.admits)
        except NotCapable as e:
            raise GatewayError(400, str(e), code=f"{ex.endpoint.capability.value}_unavailable", param="model") from e
        except AccountUnavailable as e:
            raise unavailable(e) from e
        ex.attempt.tried.append(cred.account)
        ex.attempt.cred, ex.attempt.counted = cred, None  # another server counts anew
        return cred

    async def attempts(self, ex: Exchange, once: Callable[[Credential], Awaitable[T | UpstreamError]]) -> T:
        """The one retry loop, a live request's and a batch call's: `once` sends with the attempt's credential and
        returns the answer, or the refusal a way back may mend (`recover`: another credential, or the client's
        error raised)."""
        assert ex.attempt.cred is not None
        cred = ex.attempt.cred
        while True:
            got = await once(cred)
            if not isinstance(got, UpstreamError):
                return got
            cred = await self.recover(ex, got)

    async def recover(self, ex: Exchange, err: UpstreamError) -> Credential:
        """The credential to try again with, after reporting `err` to the pool; raises the client's
        error when the request should not be tried again. Each way back is tried in order; the first that
        applies says how. The client's error for a refusal of the model is the last way's: its fallback group's."""
        assert self.pool is not None and ex.attempt.cred is not None
        try:
            for way in (self.listed_elsewhere, self.refitted, self.relearned, self.truncated, self.new_chat,
                        self.another_for_the_plan, self.past_a_refused_key, self.refreshed, self.rotated, self.waited,
                        self.elsewhere):
                cred = await way(ex, err)
                if cred is not None:
                    return cred
            raise await self.given_up(ex, err)
        except GatewayError as refused:
            return await self.fell_back(ex, err, refused)

    # ---- the ways back, each None when it does not apply ---------------------------------------------------

    async def listed_elsewhere(self, ex: Exchange, err: UpstreamError) -> Credential | None:
        """A model the account's own list leaves out (nothing was sent; the account is fine for its own models):
        the next account; none: the 404 naming the models that are served."""
        if err.kind != errors.UNLISTED:
            return None
        account = ex.account
        try:
            cred = await self.acquire(ex, exclude=ex.attempt.tried_for_model)
        except GatewayError:
            raise err.to_gateway_error() from None
        ex.attempt.retries.append(Retry(RetryReason.ROTATED, account))
        return cred

    async def another_for_the_plan(self, ex: Exchange, err: UpstreamError) -> Credential | None:
        """A plan that refuses this client (the Coding Plan's 405): another account of the pool, the refusing one
        reported nothing (it serves the clients it accepts); none: the plan's refusal, in the client's words."""
        if err.kind != errors.PLAN_REFUSED:
            return None
        account = ex.account
        assert self.pool is not None
        self.pool.report(account, Outcome.PLAN_REFUSED, detail=ex.client.user_agent)  # counted for /health
        refused = f"{account} refused this client ({err.message})"
        try:
            cred = await self.acquire(ex, exclude=ex.attempt.tried)
        except GatewayError:
            ex.notes.append(f"{refused}: no other account")
            raise GatewayError(err.status, f"Account {account}: {err.message}", type=err.type, code=err.code,
                               headers=err.headers) from None
        ex.notes.append(f"{refused}: another account tried")
        ex.attempt.retries.append(Retry(RetryReason.ROTATED, account))
        return cred

    async def refreshed(self, ex: Exchange, err: UpstreamError) -> Credential | None:
        """A login's 401: refreshed once (a key's 401 is `past_a_refused_key`'s)."""
        assert self.pool is not None and ex.attempt.cred is not None
        if err.kind != errors.AUTH or retried(ex, RetryReason.REFRESHED):
            return None
        account = ex.account
        self.pool.report(account, Outcome.AUTH)
        try:
            cred = await self.pool.refreshed(account, refused=ex.attempt.cred.token)
        except AccountUnavailable as e:  # the refresh failed: given up
            ex.notes.append(str(e))
            return None
        ex.notes.append(f"401 from Qwen: refreshed {account}")
        ex.attempt.cred = cred
        ex.attempt.retries.append(Retry(RetryReason.REFRESHED, account))
        return cred

    async def rotated(self, ex: Exchange, err: UpstreamError) -> Credential | None:
        """An exhausted quota: Qwen's words stay with the account while it cools down, another account takes
        the request; none: the pool's own answer (429, or 503), which names the account and gives Qwen's words."""
        assert self.pool is not None
        if err.kind != errors.QUOTA:
            return None
        account = ex.account
        self.pool.report(account, Outcome.QUOTA, retry_after=err.retry_after, detail=err.message, window=err.window)
        try:
            cred = await self.acquire(ex, exclude=ex.attempt.tried)
        except GatewayError as e:
            if e.status == 429 and "retry-after" in err.headers:  # the upstream said when (Qwen Chat's `num`)
                raise GatewayError(429, e.message, type=e.type, code=e.code,
                                   headers={**e.headers, "retry-after": err.headers["retry-after"]}) from e
            raise
        ex.notes.append(f"quota exhausted on {account}{f' ({err.window.value})' if err.window else ''}: rotated")
        ex.attempt.retries.append(Retry(RetryReason.ROTATED, account))
        return cred

    async def waited(self, ex: Exchange, err: UpstreamError) -> Credential | None:
        """Throttled: a short wait (what Qwen asked, at most MAX_THROTTLE_WAIT), MAX_THROTTLE_RETRIES times, is
        better than an error; then any usable account."""
        assert self.pool is not None
        if err.kind != errors.THROTTLE or retried(ex, RetryReason.THROTTLED) >= MAX_THROTTLE_RETRIES:
            return None
        account = ex.account
        wait = min(err.retry_after if err.retry_after is not None else 1.0, MAX_THROTTLE_WAIT)
        self.pool.report(account, Outcome.THROTTLE, retry_after=wait, detail=err.message, window=err.window)
        ex.notes.append(f"throttled on {account}{f' ({err.window.value})' if err.window else ''}: waited {wait:g}s")
        await asyncio.sleep(wait)
        try:
            cred = await self.acquire(ex)
        except GatewayError:
            return None
        ex.attempt.retries.append(Retry(RetryReason.THROTTLED, account, wait))
        return cred

    async def elsewhere(self, ex: Exchange, err: UpstreamError) -> Credential | None:
        """The account's server could not be reached (nothing was sent) or says its engine is down: another account
        takes the request, and the one that failed cools down (as a throttled one does) so that the next requests and
        its conversations go elsewhere; none other: the client's error, and the account is left as it was (one
        upstream down is a 502 each time, never a pool that says it is cooling)."""
        if err.kind != errors.UNREACHABLE:
            return None
        account = ex.account
        try:
            cred = await self.acquire(ex, exclude=ex.attempt.tried)
        except GatewayError:
            raise err.to_gateway_error() from None
        assert self.pool is not None
        self.pool.report(account, Outcome.UNREACHABLE, detail=err.message)
        ex.notes.append(f"{account} unreachable ({err.message}): sent to {cred.account}")
        ex.attempt.retries.append(Retry(RetryReason.ROTATED, account))
        return cred

    async def given_up(self, ex: Exchange, err: UpstreamError) -> GatewayError:
        """No way back: the pool told how the account did, and the client's error (a context overflow in the
        guard's terms: the limit Qwen named, the prompt counted)."""
        assert self.pool is not None
        self.pool.report(ex.account, _POOL_OUTCOME.get(err.kind, Outcome.ERROR), window=err.window,
                         detail=err.message if err.window else None)
        if err.kind == errors.CONTEXT and err.counted is not None:  # the server's own count and window
            prompt, window = err.counted
            return ContextOverflow(max(prompt, window + 1), window, param_of(ex))
        if err.kind == errors.CONTEXT:
            return await over_upstream_limit(ex, err.message, err.to_gateway_error())
        return err.to_gateway_error()

    async def past_a_refused_key(self, ex: Exchange, err: UpstreamError) -> Credential | None:
        """A key Qwen answers with 401 is not refreshed: the account marks itself refused (kept until its key
        changes) and says so; the next account takes the request. With none, the client reads which
        account's key, in which variable, Qwen refused — not Qwen's bare `invalid access token or token
        expired`, which reads like the end of the OAuth tier."""
        assert self.pool is not None and ex.attempt.cred is not None
        if err.kind != errors.AUTH or ex.attempt.cred.kind != KEY:
            return None
        account = ex.attempt.cred.account
        self.pool.report(account, Outcome.AUTH)
        why = f"Qwen refused the key of account {account} with 401."
        if not retried(ex, RetryReason.REFRESHED):
            try:  # the account's verdict (AccountPool: refused, and why); another pool may hand out a new key
                cred = await self.pool.refreshed(account, refused=ex.attempt.cred.token)
                ex.attempt.retries.append(Retry(RetryReason.REFRESHED, account))
                return cred
            except AccountUnavailable as e:
                why = str(e)
        ex.notes.append(why)
        try:
            cred = await self.acquire(ex, exclude=ex.attempt.tried)
        except GatewayError:
            raise GatewayError(401, f"{why} Qwen said: “{err.message}”", code="invalid_api_key",
                               headers=NO_RETRY) from None
        ex.attempt.retries.append(Retry(RetryReason.ROTATED, account))
        return cred
