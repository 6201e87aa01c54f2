"""Model Studio's Files and Batch APIs (`{base}/files…`, `{base}/batches…`) called as a chat turn's upstream
request is (upstream/engine.py): the account the pool hands out, each refusal handed to the same retry policy
(upstream/retry.py) — a key Qwen refuses (401) marked refused, a quota or a throttle (429) cooling its account, all of it in the pool's
status and /health — and the call made again where that is safe.

Safe means Qwen has not taken anything yet: a 401 or 429 is answered before any work. A new upload (nothing on Qwen
yet) may go to the next pay-as-you-go account, its body built again for that account (`Build`). A call on an
object (a batch made from a file, a poll, a download, a cancel) stays on the account that holds it (`holder`): a
throttle is waited out there, a refused key or a spent quota is the client's error naming that account. Anything
else — a server error, a connection lost mid-way — may have been taken, so it is never sent again: a batch
created twice would run (and be billed) twice. api/batches/ says what to ask; components.py wires this in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection

from ... import errors
from ...accounts import AccountUnavailable, Credential, Pool
from ...errors import NO_RETRY, ConnectionFailed, GatewayError, UpstreamError, UpstreamTimeout, unavailable
from ...exchange import Exchange
from ...settings.config import Config
from ..retry import RetryPolicy
from .batch_accounts import batch_account, credential_of
from .errors import classify

# (credential, method, suffix under the account's base, body, content type, query, client's User-Agent, options)
Send = Callable[[Credential, str, str, bytes, str, str, str, Config], Awaitable[tuple[int, str, bytes]]]
Build = Callable[[Credential], Awaitable[tuple[str, bytes]]]  # an upload's (content type, body) for an account
REFUSALS = (401, 403, 429)  # statuses Qwen answers before it takes anything
WAYS_BACK = (errors.AUTH, errors.QUOTA, errors.THROTTLE)  # the refusals the pool hears of (the others pass as Qwen's)


class BatchCalls:
    def __init__(self, pool: Callable[[], Pool | None], send: Send,
                 usd_budget_check: Callable[[Exchange], None] = lambda ex: None) -> None:
        self.pool, self.send = pool, send
        self.usd_budget_check = usd_budget_check  # a named key's USD budget: nothing unpriced (as engine.py's)

    async def call(self, ex: Exchange, config: Config, method: str, suffix: str, *, holder: str | None = None,
                   body: bytes | Build = b"", content_type: str = "", query: str = "",
                   model: str = "") -> tuple[int, str, bytes]:
        """`method` `{base}/{suffix}?{query}` on `holder` (the account that holds the object), else on the next
        account that may run batches: Qwen's (status, content type, body) once it took the call or refused it in
        a way no retry mends. `model`: the model the call runs (a batch's lines), checked against a named key's
        USD budget before it goes. Raises the client's GatewayError."""
        policy = _Policy(self.pool(), holder)
        await policy.acquire(ex)

        async def once(cred: Credential) -> tuple[int, str, bytes] | UpstreamError:
            if model:
                ex.attempt.model = model
                if ex.key.usd_budget:  # the model as its lines were sent, on the account that runs them
                    self.usd_budget_check(ex)
            ctype, content = (content_type, body) if isinstance(body, bytes) else await body(cred)
            try:
                status, rtype, data = await self.send(cred, method, suffix, content, ctype, query,
                                                      ex.client.user_agent, config)
            except ConnectionFailed as e:  # Qwen may have taken it: never sent again
                raise GatewayError(504 if isinstance(e, UpstreamTimeout) else 502,
                                   f"Qwen's Files and Batch APIs could not be reached with account {cred.account}: "
                                   f"{e}", code="upstream_unreachable") from None
            ex.attempt.status = status
            err = classify(status, data) if status in REFUSALS else None
            if err is None or err.kind not in WAYS_BACK:
                return status, rtype, data
            ex.attempt.response_body = data
            return err  # the retry policy's: another account, a wait, or the client's error

        return await policy.attempts(ex, once)  # the live requests' retry loop (retry.py)

    async def holder(self, ex: Exchange, account: str) -> Credential:
        """The credential of the account that holds an object, on the exchange (its ledger row, its flow)."""
        return await _Policy(self.pool(), account).acquire(ex)

    async def usable(self) -> None:
        """Raises the client's error when no account may run batches now (a list with nothing to list says why,
        as an upload would)."""
        await _Policy(self.pool(), None).choose()


class _Policy(RetryPolicy):
    """The chat path's ways back (retry.py), with a batch call's choice of account: the one that holds its object
    (`holder`: retried there only), else the next pay-as-you-go key account the call has not tried."""

    def __init__(self, pool: Pool | None, holder: str | None) -> None:
        super().__init__(pool)
        self.holder = holder

    async def acquire(self, ex: Exchange, exclude: Collection[str] = ()) -> Credential:
        cred = await self.choose(exclude)
        ex.attempt.tried.append(cred.account)
        ex.attempt.cred = cred
        return cred

    async def choose(self, exclude: Collection[str] = ()) -> Credential:
        if self.pool is None:
            raise GatewayError(503, "The gateway has no account pool configured.", code="no_accounts",
                               headers=NO_RETRY)
        try:
            return await (credential_of(self.pool, self.holder) if self.holder is not None
                          else batch_account(self.pool, exclude))
        except AccountUnavailable as e:
            raise unavailable(e) from e
