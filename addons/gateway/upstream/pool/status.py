"""What the account pool says about its accounts: the rows of /health and `qwen-auth status`, and the
start-up log lines (which account is loaded, and whether any works). Never a token or key.

    rows = status_rows(pool.accounts, pool.state, pool.registry_error)    # AccountPool.status()
    lines = describe_rows(rows, pool.accounts)                            # AccountPool.describe()
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence

from ...accounts import WEB, AccountUnavailable
from ...auth.account import Account
from ...auth.key_account import KeyAccount
from ...auth.names import iso
from ...auth.state import AccountState
from ...auth.web_account import NOT_SERVED
from .windows import window_of

USABLE_STATES = ("ok", "expired", "refreshing")
NO_ACCOUNTS = ("No Qwen account is configured: run `qwen-auth login` (Qwen Code OAuth) or "
               "`qwen-auth add-key NAME --preset dashscope-intl --key-env VAR` (DashScope / Model Studio key).")

NO_EMBEDDINGS = ("None of your usable Qwen accounts ({}) serves embeddings: only a key account added with "
                 "--embeddings does (`qwen-auth add-key NAME --preset dashscope-intl --key-env VAR --embeddings`; "
                 "--replace changes an existing one). Qwen OAuth logins have no embeddings API.")

UNSERVED: dict[str, str] = {WEB: NOT_SERVED}  # why an account of a kind whose provider has no upstream is never used


class PoolExhausted(AccountUnavailable):
    """No account can take a request now: `retry_at` (epoch s) when the first cooling one is back; `transient`
    when a refresh failed on the way (a retry may be served); neither: no wait helps (a login, a key, ...)."""


def unserved(provider: str | None, providers: Collection[str] | None, kind: str = "") -> str | None:
    """Why an account of `provider` (and `kind`) is never handed out by a pool serving `providers` (None: every one),
    or None."""
    if not provider or providers is None or provider in providers:
        return None
    return UNSERVED.get(kind, f"the gateway has no upstream for {provider} accounts")


class PlanRefusals:
    """Clients an account's plan refused (the Coding Plan serves coding agents only: its 405), per account since
    the gateway started: the account stays `ok` — it serves the clients it accepts — and its row says how many
    were refused, when the last was, and which client that was (its User-Agent: never a credential)."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, float, str]] = {}

    def note(self, account: str, client: str) -> None:
        count = self._seen.get(account, (0, 0.0, ""))[0]
        self._seen[account] = (count + 1, time.time(), client[:200])

    def row(self, account: str) -> dict | None:
        if (seen := self._seen.get(account)) is None:
            return None
        return {"count": seen[0], "last": iso(seen[1]), "last_client": seen[2] or "(no User-Agent)"}


def status_rows(accounts: Sequence[Account], state: AccountState, registry_error: str | None,
                providers: Collection[str] | None = None, refusals: PlanRefusals | None = None) -> list[dict]:
    """One JSON-safe row per account, then one for a broken accounts.json: name, kind, state (ok, expired,
    refreshing, needs_login, cooling_down, missing, refused, error; `unserved`: fine, but of a kind the pool
    serving `providers` cannot send requests with), base_url, expires_at, cooldown_until, while cooling `window`
    (what ran out: windows.py), requests_today, last_error, and kind-specific details (a key's `group`)."""
    out = []
    now = time.time()
    for a in accounts:
        try:
            st = a.status()
        except Exception as e:  # status must never take /health down
            st = {"name": a.name, "kind": a.kind, "state": "error", "last_error": type(e).__name__}
        row = state.get(a.name)
        until = row["cooldown_until"] or 0.0
        st.setdefault("base_url", None)
        st.setdefault("expires_at", None)
        st.setdefault("last_error", None)
        st["cooldown_until"] = iso(until) if until > now else None
        if until > now and st.get("state") in ("ok", "expired", "refreshing"):
            st["state"] = "cooling_down"
            st["last_error"] = st["last_error"] or row["last_error"]
            st["window"] = window_of(row["last_error"])
        st["requests_today"] = state.requests_today(a.name)
        if refusals is not None and (refused := refusals.row(a.name)) is not None:
            st["plan_refusals"] = refused
        refusal = unserved(getattr(a, "provider", None), providers, a.kind)
        if refusal and st.get("state") in USABLE_STATES + ("cooling_down",):
            st.update(state="unserved", last_error=refusal)
        out.append(st)
    if registry_error:
        out.append({"name": "accounts.json", "kind": "config", "state": "error", "base_url": None,
                    "expires_at": None, "cooldown_until": None, "requests_today": 0,
                    "last_error": registry_error})
    return out


def describe_rows(rows: Sequence[dict], accounts: Sequence[Account]) -> list[str]:
    """The start-up log lines for `rows` (from status_rows): see AccountPool.describe."""
    lines = []
    for r in rows:
        line = f"account {r['name']} ({r['kind']}): {r.get('state') or '?'}, upstream {r.get('base_url') or '-'}"
        if r.get("cooldown_until"):
            line += f", cooling down until {r['cooldown_until']}"
        if r.get("last_error") and r.get("state") not in ("ok", "expired"):
            line += f" - {str(r['last_error']).removeprefix(r['name'] + ': ')}"
        lines.append(line)
    for a in accounts:
        hint = a.key_warning() if isinstance(a, KeyAccount) else None
        if hint:
            lines.append(f"warning: account {a.name}: {hint}")
    if not any(r.get("state") in USABLE_STATES for r in rows):
        if not rows:
            lines.append("WARNING: no Qwen account is configured, so every request will fail: " + NO_ACCOUNTS
                         .removeprefix("No Qwen account is configured: "))
        else:
            lines.append("WARNING: no Qwen account is usable now, so requests will fail until one is "
                         "(see the states above; `qwen-auth status` shows details).")
    return lines
