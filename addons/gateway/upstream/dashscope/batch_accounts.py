"""Which accounts may run batches: Model Studio's pay-as-you-go key accounts. The Coding Plan and the Token Plan
forbid batch jobs (their terms allow interactive AI tools only: dashscope-rules.md), OAuth logins and web sessions
have no Files or Batch API. A key account on a base the gateway cannot place (a workspace domain is placed, an
emulator or self-hosted DashScope is not) runs batches when its base is DashScope's compatible mode
(`…/compatible-mode/v1`), where pay-as-you-go serves them."""

from __future__ import annotations

from collections.abc import Collection

from ...accounts import KEY, AccountUnavailable, Credential, Pool
from ...errors import GatewayError

PLANS = {"coding": "the Coding Plan", "token": "the Token Plan"}
COMPATIBLE_MODE = "/compatible-mode/v1"


def unfit(cred: Credential) -> str | None:
    """Why `cred`'s account cannot run batches (a phrase naming the account), or None."""
    if cred.kind != KEY:
        return f"{cred.account} (a {cred.kind} account: no Batch API)"
    if cred.billing in PLANS:
        return f"{cred.account} ({PLANS[cred.billing]}, whose terms forbid batch jobs)"
    if cred.billing.startswith("payg") or (not cred.billing and cred.base_url.rstrip("/").endswith(COMPATIBLE_MODE)):
        return None
    return f"{cred.account} (not a Model Studio pay-as-you-go base)"


def refusal(reasons: list[str]) -> GatewayError:
    return GatewayError(403, "Batches and their files need a Model Studio pay-as-you-go key account: the Coding Plan "
                             "and the Token Plan forbid batch jobs. This gateway's accounts cannot run them: "
                             + "; ".join(reasons) + ". Add a pay-as-you-go key (qwen-auth add-key --preset "
                             "dashscope-intl).", code="batch_not_allowed")


async def batch_account(pool: Pool, exclude: Collection[str] = ()) -> Credential:
    """A credential of the next account that may run batches, skipping `exclude` (the accounts a call tried).
    Raises GatewayError 403 when no account may run them, else the pool's AccountUnavailable when none that may
    is usable now."""
    skipped: list[str] = list(exclude)
    reasons: list[str] = []
    while True:
        try:
            cred = await pool.acquire(skipped)
        except AccountUnavailable:
            if reasons and not exclude:  # a retry's cause is the account it left, not the plans
                raise refusal(reasons) from None
            raise
        why = unfit(cred)
        if why is None:
            return cred
        skipped.append(cred.account)
        reasons.append(why)


async def credential_of(pool: Pool, account: str) -> Credential:
    """The credential of the account that holds a file or batch. Raises GatewayError 503 when it is not configured
    now, the pool's AccountUnavailable when it is not usable now (a refused key, a quota: the pool says which)."""
    names = [a.get("name") for a in pool.status()]
    if account not in names:
        raise GatewayError(503, f"The account that holds this object, {account}, is not configured now.",
                           code="account_unavailable")
    cred = await pool.acquire([n for n in names if n != account and isinstance(n, str)])
    if cred.account != account:  # a pool whose accounts changed between the two calls
        raise GatewayError(503, f"The account that holds this object, {account}, is not configured now.",
                           code="account_unavailable")
    return cred
