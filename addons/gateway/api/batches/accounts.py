"""Which accounts may run batches: Model Studio's pay-as-you-go key accounts. The Coding Plan and the Token Plan
forbid batch jobs (their terms allow interactive AI tools only: dashscope-rules.md), OAuth logins and web sessions
have no Files or Batch API. A key account on a base the gateway cannot place (a workspace domain is placed, an
emulator or self-hosted DashScope is not) runs batches when its base is DashScope's compatible mode
(`…/compatible-mode/v1`), where pay-as-you-go serves them."""

from __future__ import annotations

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


async def batch_account(pool: Pool | None) -> Credential:
    """A credential of the next account that may run batches. Raises GatewayError: 403 when none may, 503 when
    none is usable now."""
    if pool is None:
        raise GatewayError(503, "No account is configured.", code="no_account")
    skipped: list[str] = []
    reasons: list[str] = []
    while True:
        try:
            cred = await pool.acquire(skipped)
        except AccountUnavailable as e:
            if reasons:
                raise refusal(reasons) from None
            raise GatewayError(503, str(e), code="account_unavailable") from None
        why = unfit(cred)
        if why is None:
            return cred
        skipped.append(cred.account)
        reasons.append(why)


async def credential_of(pool: Pool | None, account: str) -> Credential:
    """The credential of the account that holds a file or batch. Raises GatewayError 503 when it is not usable now."""
    if pool is None:
        raise GatewayError(503, "No account is configured.", code="no_account")
    others = [a["name"] for a in pool.status() if a.get("name") != account]
    try:
        cred = await pool.acquire(others)
    except AccountUnavailable as e:
        raise GatewayError(503, f"The account that holds this object, {account}, is not usable now: {e}",
                           code="account_unavailable") from None
    if cred.account != account:
        raise GatewayError(503, f"The account that holds this object, {account}, is not configured now.",
                           code="account_unavailable")
    return cred
