"""The account pool: which account serves the next request, and what happens when one fails."""

from __future__ import annotations

import time
from collections.abc import Collection

from .accounts import Registry
from .base import Account, AccountUnavailable, Credential
from .settings import AuthSettings
from .state import AccountState

THROTTLE_MAX_S = 30.0


class PoolExhausted(AccountUnavailable):
    """Every account is cooling down (quota, throttling); retry_at says when the first is back."""


def next_reset(now: float, reset_hour_utc: int = 0) -> float:
    """When a daily quota comes back. Qwen's reset time is unverified (UTC midnight per the proxy
    seeds, 00:00 Beijing per others): a setting, not a fact."""
    day = 86400
    start = now - now % day + reset_hour_utc * 3600
    return start if start > now else start + day


class AccountPool:
    def __init__(self, accounts: list[Account], state: AccountState, *, reset_hour_utc: int = 0) -> None:
        self.accounts = accounts
        self.state = state
        self.reset_hour_utc = reset_hour_utc
        self._next = 0
        self._throttle_backoff: dict[str, float] = {}

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> "AccountPool":
        state = AccountState(settings.state_dir / "state.sqlite3")
        return cls(Registry(settings).accounts(state), state)

    def _get(self, name: str) -> Account:
        for a in self.accounts:
            if a.name == name:
                return a
        raise AccountUnavailable(f"no account named {name!r}")

    async def acquire(self, exclude: Collection[str] = ()) -> Credential:
        if not self.accounts:
            raise AccountUnavailable("No Qwen account is configured: run `qwen-auth login` (Qwen Code OAuth) or "
                                     "`qwen-auth add-key NAME --preset dashscope-intl --key-env VAR`.")
        now = time.time()
        problems: list[str] = []
        n = len(self.accounts)
        for i in range(n):
            acct = self.accounts[(self._next + i) % n]
            if acct.name in exclude:
                problems.append(f"{acct.name}: already tried")
                continue
            until = self.state.get(acct.name)["cooldown_until"]
            if until > now:
                problems.append(f"{acct.name}: cooling down until {time.strftime('%H:%M:%S', time.gmtime(until))}"
                                " UTC")
                continue
            try:
                cred = await acct.credential()
            except AccountUnavailable as e:
                problems.append(str(e))
                continue
            self._next = (self._next + i + 1) % n
            return cred
        msg = "No Qwen account can take this request — " + "; ".join(problems)
        waits = [self.state.get(a.name)["cooldown_until"] for a in self.accounts]
        waits = [w for w in waits if w > now]
        if waits and len(waits) + sum(1 for a in self.accounts if a.name in exclude) >= n:
            raise PoolExhausted(msg, retry_at=min(waits))
        raise AccountUnavailable(msg, needs_login=any("qwen-auth" in p for p in problems) and not waits)

    async def refreshed(self, account: str) -> Credential:
        return await self._get(account).credential(force_refresh=True)

    def report(self, account: str, outcome: str, *, retry_after: float | None = None) -> None:
        now = time.time()
        if outcome == "ok":
            self.state.count_request(account)
            self._throttle_backoff.pop(account, None)
        elif outcome == "quota":
            until = now + retry_after if retry_after else next_reset(now, self.reset_hour_utc)
            self.state.set(account, cooldown_until=until, last_error="quota exhausted")
        elif outcome == "throttle":
            wait = retry_after if retry_after is not None else self._throttle_backoff.get(account, 0.5) * 2
            self._throttle_backoff[account] = min(wait, THROTTLE_MAX_S)
            self.state.set(account, cooldown_until=now + min(wait, THROTTLE_MAX_S), last_error="throttled")

    def status(self) -> list[dict]:
        out = []
        now = time.time()
        for a in self.accounts:
            st = a.status()
            row = self.state.get(a.name)
            if row["cooldown_until"] > now and st.get("state") in ("ok", "expired"):
                st["state"] = "cooling_down"
                st["cooldown_until"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["cooldown_until"]))
            st["requests_today"] = self.state.requests_today(a.name)
            out.append(st)
        return out
