"""The account pool: which account serves the next request, and what happens when one fails.

    pool = AccountPool.from_settings(AuthSettings.from_env(...))
    for line in pool.describe(): log(line)          # at start-up: what was loaded, and whether any works
    cred = await pool.acquire(exclude=tried)        # round-robin over usable accounts
    ... send the request with cred ...
    pool.report(cred.account, Outcome.OK | AUTH | QUOTA | THROTTLE | ERROR, retry_after=...)
    cred = await pool.refreshed(cred.account, refused=cred.token)   # after AUTH: retry once

`AccountPool` is the `Pool` of accounts.py (the core). An account whose token is being refreshed (or whose refresh
waits for another process's lock) does not hold requests up while another account is usable: acquire()
waits for it at most `refresh_wait_s`, then serves the next account and lets the refresh finish alone.

Which accounts may be handed out at all: those of the `kinds` the gateway has an upstream for (the gateway
passes its pairing's kinds; None: every kind), and not a web account unless the user opted in
(`AuthSettings.web_accounts`). The others are loaded and shown by status(), never acquired.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection

from .account import Account
from ..accounts import AccountUnavailable, Capability, Credential, NotCapable, Outcome, Pool
from .names import iso
from .pool_status import NO_ACCOUNTS, USABLE_STATES, describe_rows, status_rows, unserved
from .registry import Registry, RegistryError
from ..auth_settings import AuthSettings
from .state import AccountState
from .state_pg import shared_state
from .web_account import WEB_WARNING

THROTTLE_FIRST_S = 1.0
THROTTLE_MAX_S = 30.0
OUTCOMES = tuple(o.value for o in Outcome)


class PoolExhausted(AccountUnavailable):
    """No account can take a request now. `retry_at` (epoch s) is when the first cooling-down account is
    back, or None when no wait helps (every account needs a login, a key, ...)."""


def next_reset(now: float, reset_hour_utc: int = 0) -> float:
    """When a daily quota comes back: the next `reset_hour_utc`:00 UTC after `now`.

    Qwen's/DashScope's reset time is NOT verified: the Qwen OAuth proxies assumed UTC midnight, others
    00:00 Beijing time (16:00 UTC). Hence a setting (AuthSettings.quota_reset_hour_utc,
    QWEN_QUOTA_RESET_HOUR_UTC), not a constant; a `Retry-After` from upstream wins over it."""
    day = 86400
    start = now - now % day + reset_hour_utc * 3600
    while start <= now:
        start += day
    return start


class AccountPool(Pool):
    def __init__(self, accounts: list[Account], state: AccountState, *, reset_hour_utc: int = 0,
                 registry: Registry | None = None, check_every_s: float = 5.0,
                 refresh_wait_s: float = 1.0, kinds: Collection[str] | None = None,
                 web_accounts: bool = False) -> None:
        self.accounts = list(accounts)
        self.kinds = frozenset(kinds) if kinds is not None else None
        self.web_accounts = web_accounts
        self.state = state
        self.reset_hour_utc = reset_hour_utc
        self.registry = registry
        self.registry_error: str | None = None
        self.check_every_s = check_every_s
        self.refresh_wait_s = refresh_wait_s
        self._next = 0
        self._throttle_backoff: dict[str, float] = {}
        self._sig = registry.signature() if registry else None
        self._checked = time.monotonic()

    @classmethod
    def from_settings(cls, settings: AuthSettings, *, kinds: Collection[str] | None = None) -> "AccountPool":
        """`kinds`: the credential kinds the caller can send requests with (the gateway: its pairing's)."""
        state = shared_state(settings) or AccountState(settings.state_db_path)
        pool = cls([], state, reset_hour_utc=settings.quota_reset_hour_utc, registry=Registry(settings),
                   check_every_s=settings.accounts_check_s, refresh_wait_s=settings.refresh_wait_s,
                   kinds=kinds, web_accounts=settings.web_accounts)
        pool.reload()
        return pool

    # ---- accounts ---------------------------------------------------------------------------------

    def reload(self) -> None:
        """Re-read accounts.json (and whether qwen-code's login exists). Accounts that did not change keep
        their object, so in-flight refreshes and cached logins survive."""
        if self.registry is None:
            return
        self._sig = self.registry.signature()
        self._checked = time.monotonic()
        try:
            fresh = self.registry.accounts(self.state)
            self.registry_error = None
        except RegistryError as e:
            self.registry_error = str(e)
            return  # keep the accounts we have
        old = {a.name: a for a in self.accounts}
        merged = []
        for acct in fresh:
            prev = old.get(acct.name)
            merged.append(prev if prev is not None and _same(prev, acct) else acct)
        self.accounts = merged
        self._next %= max(len(merged), 1)

    def _maybe_reload(self) -> None:
        if self.registry is None or time.monotonic() - self._checked < self.check_every_s:
            return
        self._checked = time.monotonic()
        if self.registry.signature() != self._sig:
            self.reload()

    def get(self, name: str) -> Account:
        for a in self.accounts:
            if a.name == name:
                return a
        raise AccountUnavailable(f"no account named {name!r}")

    def names(self) -> list[str]:
        return [a.name for a in self.accounts]

    # ---- the request path ---------------------------------------------------------------------------

    async def acquire(self, exclude: Collection[str] = (), *,
                      capability: Capability = Capability.CHAT) -> Credential:
        """A credential from the next usable account (round-robin) that has `capability`, skipping
        `exclude`, cooling-down and needs-login accounts. Raises PoolExhausted (an AccountUnavailable)
        when none is usable, NotCapable when usable accounts exist but none has the capability."""
        self._maybe_reload()
        if capability is Capability.EMBEDDINGS:
            return await self._acquire_capable(exclude)
        return await self._acquire(exclude)

    async def _acquire_capable(self, exclude: Collection[str]) -> Credential:
        skip = list(exclude)
        while True:
            try:
                cred = await self._acquire(skip)
            except AccountUnavailable as e:
                if len(skip) > len(exclude):  # some account was usable, but none serves embeddings
                    raise NotCapable(
                        f"None of your usable Qwen accounts ({', '.join(skip[len(exclude):])}) serves embeddings: "
                        "only a key account added with --embeddings does (`qwen-auth add-key NAME --preset "
                        "dashscope-intl --key-env VAR --embeddings`; --replace changes an existing one). Qwen "
                        "OAuth logins have no embeddings API.") from e
                raise
            if cred.embeddings:
                return cred
            skip.append(cred.account)

    async def _acquire(self, exclude: Collection[str]) -> Credential:
        if not self.accounts:
            raise AccountUnavailable(NO_ACCOUNTS + (f" ({self.registry_error})" if self.registry_error else ""))
        now = time.time()
        problems: list[str] = []
        throttled_only = True  # every account cooling down is throttled (a rate limit, not a quota)
        waits: list[float] = []
        login_only = True  # every account that was tried (not cooling, not excluded) needs a login
        pending: dict[asyncio.Task[Credential], tuple[int, Account]] = {}  # refreshes still running
        n = len(self.accounts)
        start = self._next
        for i in range(n):
            idx = (start + i) % n
            acct = self.accounts[idx]
            row = self.state.get(acct.name)
            until = row["cooldown_until"] or 0.0
            if until > now:
                waits.append(until)
                throttled_only = throttled_only and row["last_error"] == "throttled"
            if until > now:  # why it cools down says more than that this request tried it (its quota is spent)
                why = row["last_error"] or "cooling down"
                problems.append(f"{acct.name}: {why}, cooling down until {iso(until)}")
                continue
            if acct.name in exclude:
                problems.append(f"{acct.name}: already tried for this request")
                continue
            refusal = self._refusal(acct)
            if refusal is not None:  # never handed out, whatever its state (not a login to fix)
                problems.append(f"{acct.name}: {refusal}")
                login_only = False
                continue
            try:
                cred = acct.ready()  # the hot path: no I/O, no task
                if cred is None:  # a refresh is due: wait for it a little, not for another process's lock
                    busy = acct.refreshing
                    task = asyncio.ensure_future(acct.credential())
                    task.add_done_callback(_retrieve)
                    if not busy and self.refresh_wait_s > 0:
                        await asyncio.wait({task}, timeout=self.refresh_wait_s)
                    if not task.done():
                        pending[task] = (idx, acct)
                        continue
                    cred = task.result()
            except AccountUnavailable as e:
                problems.append(str(e))
                login_only = login_only and e.needs_login
                continue
            self._next = (idx + 1) % n
            return cred
        while pending:  # nobody else could serve: the first refresh to finish does
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=lambda t: (pending[t][0] - start) % n):
                idx, acct = pending.pop(task)
                exc = task.exception()
                if isinstance(exc, AccountUnavailable):
                    problems.append(str(exc))
                    login_only = login_only and exc.needs_login
                    continue
                self._next = (idx + 1) % n
                return task.result()
        retry_at = min(waits) if waits else None
        msg = "No Qwen account can take this request. " + "; ".join(problems) + "."
        if retry_at is not None:
            msg += f" The first is back at {iso(retry_at)}."
        raise PoolExhausted(msg, retry_at=retry_at, throttled=retry_at is not None and throttled_only,
                            needs_login=retry_at is None and login_only and len(exclude) == 0)

    async def refreshed(self, account: str, *, refused: str | None = None) -> Credential:
        """After upstream said 401: a freshly refreshed credential for `account` (single flight; another
        process's newer login is used if there is one; at most one refresh per account per
        refresh_backoff_s however many 401s arrive). `refused` is the token that got the 401, when known.
        Key accounts return their key unchanged."""
        return await self.get(account).credential(force_refresh=True, refused=refused)

    def report(self, account: str, outcome: Outcome | str, *, retry_after: float | None = None,
               detail: str | None = None) -> None:
        """What happened to a request sent with `account`'s credential (an Outcome or its value):
        OK - served (counted for today); AUTH - 401, the caller retries once with `refreshed()`;
        QUOTA - daily quota gone: cool down until the next reset (or `retry_after` seconds), `detail` (the
        upstream's own words) kept with it for every request refused meanwhile;
        THROTTLE - rate limited: cool down `retry_after` s, else 1 s doubling up to 30 s;
        PUNISHED - an anti-bot page: the account parks itself (a web session: needs a fresh import);
        ERROR - anything else: no change."""
        try:
            outcome = Outcome(outcome)
        except ValueError:
            raise ValueError(f"unknown outcome {outcome!r}; expected one of {OUTCOMES}") from None
        now = time.time()
        if outcome is Outcome.OK:
            self.state.count_request(account)
            self._throttle_backoff.pop(account, None)
            row = self.state.get(account)  # from memory: cheap on the request path
            if row["last_error"] and (row["cooldown_until"] or 0) <= now:
                self.state.set(account, last_error=None)
        elif outcome is Outcome.QUOTA:
            until = now + retry_after if retry_after and retry_after > 0 else next_reset(now, self.reset_hour_utc)
            self.state.set(account, cooldown_until=until,
                           last_error=f'quota exhausted (Qwen said: "{detail}")' if detail else "quota exhausted")
        elif outcome is Outcome.THROTTLE:
            if retry_after is not None and retry_after >= 0:
                wait = min(retry_after, THROTTLE_MAX_S)
            else:
                prev = self._throttle_backoff.get(account)
                wait = THROTTLE_FIRST_S if prev is None else min(prev * 2, THROTTLE_MAX_S)
            self._throttle_backoff[account] = wait
            self.state.set(account, cooldown_until=now + wait, last_error="throttled")
        elif outcome is Outcome.PUNISHED:
            for acct in self.accounts:
                if acct.name == account:
                    acct.record_punish()

    def _refusal(self, acct: Account) -> str | None:
        """Why `acct` is never handed out (opt-in missing, no upstream for its kind), or None."""
        off = getattr(acct, "off_reason", None)
        return str(off) if off else unserved(acct.kind, self.kinds)

    # ---- state ------------------------------------------------------------------------------------

    def status(self) -> list[dict]:
        """One JSON-safe row per account (never a token or key): name, kind, state (ok, expired,
        refreshing, needs_login, cooling_down, missing, error), base_url, expires_at, cooldown_until,
        requests_today, last_error, and kind-specific details."""
        self._maybe_reload()
        rows = status_rows(self.accounts, self.state, self.registry_error)
        kinds = {a.name: a.kind for a in self.accounts}
        for r in rows:  # a session that is fine but that the gateway cannot send requests with
            refusal = unserved(kinds.get(r["name"]), self.kinds)
            if refusal and r.get("state") in USABLE_STATES + ("cooling_down",):
                r.update(state="unserved", last_error=refusal)
        return rows

    def describe(self) -> list[str]:
        """For the start-up log: one line per account (name, kind, state, upstream) and a warning line
        when none is usable now. Never a token or key."""
        lines = describe_rows(self.status(), self.accounts)
        if self.web_accounts:  # the user opted in: say once, loudly, what that risks
            lines.append(WEB_WARNING)
        return lines

    def flush(self) -> None:
        self.state.flush()

    def close(self) -> None:
        self.state.close()


def _retrieve(task: asyncio.Future) -> None:
    """A refresh left to finish alone: its exception is retrieved (and kept in the account's state)."""
    if not task.cancelled():
        task.exception()


def _same(a: Account, b: Account) -> bool:
    if type(a) is not type(b) or a.kind != b.kind:
        return False
    keys = ("path", "base_url", "auth_base_url", "key_env", "_key", "model_map", "default_model", "embeddings",
            "problem")
    return all(getattr(a, k, None) == getattr(b, k, None) for k in keys)
