"""The account pool: which account serves the next request, and what happens when one fails.

    pool = AccountPool.from_settings(AuthSettings.from_env(...))
    for line in pool.describe(): log(line)          # at start-up: what was loaded, and whether any works
    cred = await pool.acquire(exclude=tried, conversation=ex.conversation)  # its account, or round-robin
    ... send the request with cred ...
    pool.report(cred.account, Outcome.OK | AUTH | QUOTA | THROTTLE | PLAN_REFUSED | ERROR, retry_after=..., ...)
    cred = await pool.refreshed(cred.account, refused=cred.token)   # after AUTH: retry once

`AccountPool` is the `Pool` of accounts.py (the core). An account being refreshed does not hold requests up
while another is usable (acquire() waits for it at most `refresh_wait_s`). A turn goes to the account that
served its conversation while it is usable (affinity.py, affinity_pg.py), else to the next usable one in
turn, which keeps it. A `group` (keys of one Alibaba Cloud account: groups.py) cools down together, as long
as what ran out says (windows.py). Only accounts of the `kinds` the gateway has an upstream for are handed
out, web accounts only when opted in; the others are shown by status().
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection

from ...accounts import AccountUnavailable, Capability, Conversation, Credential, NotCapable, Outcome, Pool, Window
from ...settings.auth import AuthSettings
from ...auth.account import Account
from .affinity import Affinity
from .affinity_pg import SharedAffinity
from .groups import group_map
from ...auth.names import iso
from .status import (NO_ACCOUNTS, NO_EMBEDDINGS, PlanRefusals, PoolExhausted, describe_rows, status_rows,
                          unserved)
from ...auth.registry import Registry, RegistryError, same_account
from ...auth.state import AccountState
from ...auth.state_pg import SharedAccountState, shared_state
from ...auth.web_account import WEB_WARNING
from . import outcomes
from .windows import next_reset

# A server whose queue is this many requests longer than the shortest takes no new conversation while another can
QUEUE_SLACK = 0
__all__ = ["AccountPool", "PoolExhausted", "next_reset"]


class AccountPool(Pool):
    def __init__(self, accounts: list[Account], state: AccountState, *, reset_hour_utc: int = 0,
                 registry: Registry | None = None, check_every_s: float = 5.0,
                 refresh_wait_s: float = 1.0, providers: Collection[str] | None = None,
                 web_accounts: bool = False, affinity: Affinity | None = None) -> None:
        self.accounts = list(accounts)
        self.providers = frozenset(providers) if providers is not None else None
        self.web_accounts = web_accounts
        self.state = state
        self.reset_hour_utc = reset_hour_utc
        self.registry = registry
        self.registry_error: str | None = None
        self.check_every_s = check_every_s
        self.refresh_wait_s = refresh_wait_s
        self._next = 0
        self._throttle_backoff: dict[str, float] = {}
        self.refusals = PlanRefusals()  # clients the accounts' plans refused (the Coding Plan's 405)
        self.affinity = affinity if affinity is not None else Affinity()
        self.waiting: dict[str, int] = {}  # requests queued on an account's own server, as it last said (`load`)
        self._groups = group_map(self.accounts)
        self._sig = registry.signature() if registry else None
        self._checked = time.monotonic()

    @classmethod
    def from_settings(cls, settings: AuthSettings, *, providers: Collection[str] | None = None) -> "AccountPool":
        """`providers`: the providers the caller can send requests to (the gateway: its pairing's)."""
        state = shared_state(settings) or AccountState(settings.state_db_path)
        affinity = None
        if isinstance(state, SharedAccountState):  # gateways that share state share conversations too
            affinity = SharedAffinity(state.db)
            affinity.start()
        pool = cls([], state, reset_hour_utc=settings.quota_reset_hour_utc, registry=Registry(settings),
                   check_every_s=settings.accounts_check_s, refresh_wait_s=settings.refresh_wait_s,
                   providers=providers, web_accounts=settings.web_accounts, affinity=affinity)
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
            merged.append(prev if prev is not None and same_account(prev, acct) else acct)
        self.accounts = merged
        self._next %= max(len(merged), 1)
        self._groups = group_map(merged)

    def _maybe_reload(self) -> None:
        if self.registry is None or time.monotonic() - self._checked < self.check_every_s:
            return
        self._checked = time.monotonic()
        if self.registry.signature() != self._sig:
            self.reload()

    def get(self, name: str) -> Account:
        if (acct := self._find(name)) is None:
            raise AccountUnavailable(f"no account named {name!r}")
        return acct

    def names(self) -> list[str]:
        return [a.name for a in self.accounts]

    # ---- the request path ---------------------------------------------------------------------------

    async def acquire(self, exclude: Collection[str] = (), *, capability: Capability = Capability.CHAT,
                      conversation: Conversation | None = None, only: Callable[[str, str], bool] | None = None
                      ) -> Credential:
        """A credential from the account that served `conversation` (or, new, holds its prefix) if it is usable,
        else from the next usable account (round-robin), which then keeps the conversation; one that has `capability`, skipping
        `exclude`, cooling-down and needs-login accounts. Raises PoolExhausted (an AccountUnavailable)
        when none is usable, NotCapable when usable accounts exist but none has the capability."""
        self._maybe_reload()
        hidden = frozenset(a.name for a in self.accounts if not only(a.name, a.provider)) if only is not None else \
            frozenset()  # outside the request's binding: never handed out, never named
        if hidden and all(a.name in hidden for a in self.accounts):
            raise PoolExhausted("No account the request is bound to (qwen_account_bindings) is configured.")
        if capability is Capability.EMBEDDINGS:
            return await self._acquire_capable(exclude, hidden)
        if conversation is None:
            return await self._acquire(exclude, hidden=hidden)
        cred = await self._acquire(exclude, await self.affinity.placed(conversation), hidden=hidden)
        self.affinity.served(conversation, cred.account)
        return cred

    def hold(self, conversation: Conversation, account: str) -> None:
        """The conversation stays on `account` as long as its turn's body asked Qwen's cache to last."""
        self.affinity.served(conversation, account, exact=True)

    async def _acquire_capable(self, exclude: Collection[str], hidden: Collection[str] = ()) -> Credential:
        skip = list(exclude)
        while True:
            try:
                cred = await self._acquire(skip, hidden=hidden)
            except AccountUnavailable as e:
                if len(skip) > len(exclude):  # some account was usable, but none serves embeddings
                    raise NotCapable(NO_EMBEDDINGS.format(", ".join(skip[len(exclude):]))) from e
                raise
            if cred.embeddings:
                return cred
            skip.append(cred.account)

    async def _acquire(self, exclude: Collection[str], pinned: str | None = None, *,
                       hidden: Collection[str] = ()) -> Credential:
        if not self.accounts:
            raise AccountUnavailable(NO_ACCOUNTS + (f" ({self.registry_error})" if self.registry_error else ""))
        now = time.time()
        problems: list[str] = []
        throttled_only = True  # every account cooling down is throttled (a rate limit, not a quota)
        waits: list[float] = []
        login_only, transient = True, False  # each account tried needs a login; some refresh failed on the way
        pending: dict[asyncio.Task[Credential], tuple[int, Account]] = {}  # refreshes still running
        n = len(self.accounts)
        start = self._next
        order = [(start + i) % n for i in range(n)]
        first = next((i for i in order if self.accounts[i].name == pinned), None) if pinned else None
        if first is not None:  # the conversation's account first; the turn keeps the round-robin where it was
            order.remove(first)
            order.insert(0, first)
        elif self.waiting:  # a new conversation: a server whose queue is longer than the shortest comes last
            least = min(self.waiting.get(self.accounts[i].name, 0) for i in order)
            order.sort(key=lambda i: self.waiting.get(self.accounts[i].name, 0) > least + QUEUE_SLACK)
        for idx in order:
            acct = self.accounts[idx]
            if acct.name in hidden:
                continue
            row = self.state.get(acct.name)
            until = row["cooldown_until"] or 0.0
            if until > now:  # why it cools down says more than that this request tried it (its quota is spent)
                waits.append(until)
                throttled_only = throttled_only and (row["last_error"] or "").startswith("throttled")
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
                login_only, transient = login_only and e.needs_login, transient or e.transient
                continue
            if idx != first:
                self._next = (idx + 1) % n
            return cred
        while pending:  # nobody else could serve: the first refresh to finish does
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=lambda t: (pending[t][0] - start) % n):
                idx, acct = pending.pop(task)
                exc = task.exception()
                if isinstance(exc, AccountUnavailable):
                    problems.append(str(exc))
                    login_only, transient = login_only and exc.needs_login, transient or exc.transient
                    continue
                self._next = (idx + 1) % n
                return task.result()
        retry_at = min(waits) if waits else None
        msg = "No Qwen account can take this request. " + "; ".join(problems) + "."
        if retry_at is not None:
            msg += f" The first is back at {iso(retry_at)}."
        raise PoolExhausted(msg, retry_at=retry_at, throttled=retry_at is not None and throttled_only,
                            needs_login=retry_at is None and login_only and not exclude, transient=transient)

    async def refreshed(self, account: str, *, refused: str | None = None) -> Credential:
        """After upstream said 401: a freshly refreshed credential for `account` (single flight; another
        process's newer login is used if there is one; at most one refresh per account per
        refresh_backoff_s however many 401s arrive). `refused` is the token that got the 401, when known.
        Key accounts return their key unchanged."""
        return await self.get(account).credential(force_refresh=True, refused=refused)

    def load(self, account: str, waiting: int | None) -> None:
        """How many requests `account`'s own server has queued, as its metrics say (None: not known): new
        conversations go to the servers with the shortest queues; a conversation stays where its prefix is
        (slow is not dead)."""
        if waiting is None:
            self.waiting.pop(account, None)
        else:
            self.waiting[account] = waiting

    def report(self, account: str, outcome: Outcome | str, *, retry_after: float | None = None,
               detail: str | None = None, window: Window | None = None) -> None:
        """What happened to a request sent with `account`'s credential (an Outcome or its value): outcomes.py."""
        outcomes.report(self, account, outcome, retry_after=retry_after, detail=detail, window=window)

    def _find(self, name: str) -> Account | None:
        return next((a for a in self.accounts if a.name == name), None)

    def _refusal(self, acct: Account) -> str | None:
        """Why `acct` is never handed out (opt-in missing, no upstream for its provider), or None."""
        if off := getattr(acct, "off_reason", None):
            return str(off)
        return unserved(acct.provider, self.providers, acct.kind)

    # ---- state ------------------------------------------------------------------------------------

    def status(self) -> list[dict]:
        """One JSON-safe row per account (never a token or key): status.status_rows."""
        self._maybe_reload()
        return status_rows(self.accounts, self.state, self.registry_error, self.providers, self.refusals)

    def describe(self) -> list[str]:
        """The start-up log's lines: one per account and a warning when none is usable now (never a secret)."""
        lines = describe_rows(self.status(), self.accounts)
        if self.web_accounts:  # the user opted in: say once, loudly, what that risks
            lines.append(WEB_WARNING)
        return lines

    def flush(self) -> None:
        self.state.flush()

    def close(self) -> None:
        self.affinity.close()
        self.state.close()


def _retrieve(task: asyncio.Future) -> None:
    """A refresh left to finish alone: its exception is retrieved (and kept in the account's state)."""
    if not task.cancelled():
        task.exception()
