"""The account pool: which account serves the next request, and what happens when one fails."""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from pathlib import Path

from .base import OAUTH, Account, AccountUnavailable, Credential
from .endpoints import api_base_from_resource_url
from .settings import AuthSettings


class PoolExhausted(AccountUnavailable):
    """Every account is cooling down (quota, throttling); retry_at says when the first is back."""


class OAuthFileAccount(Account):
    """A Qwen Code login: `oauth_creds.json` as qwen-code writes it (read here, never deleted)."""

    kind = OAUTH

    def __init__(self, name: str, path: Path, settings: AuthSettings) -> None:
        self.name = name
        self.path = path
        self.settings = settings

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            raise AccountUnavailable(f"{self.name}: no credential file; run `qwen-auth login`", needs_login=True)
        except (OSError, ValueError) as e:
            raise AccountUnavailable(f"{self.name}: credential file unreadable ({type(e).__name__})")
        ok = isinstance(data, dict) and all(isinstance(data.get(k), str) for k in
                                            ("access_token", "refresh_token", "token_type"))
        if not ok or not isinstance(data.get("expiry_date"), (int, float)):
            raise AccountUnavailable(f"{self.name}: credential file is not a valid Qwen Code login", needs_login=True)
        return data

    async def credential(self, *, force_refresh: bool = False) -> Credential:
        data = self._read()
        base = api_base_from_resource_url(data.get("resource_url"), self.settings.default_api_base)
        return Credential(self.name, OAUTH, base, data["access_token"])

    def status(self) -> dict:
        try:
            data = self._read()
        except AccountUnavailable as e:
            return {"name": self.name, "kind": self.kind, "state": "missing", "last_error": str(e)}
        expired = data["expiry_date"] <= time.time() * 1000
        return {"name": self.name, "kind": self.kind, "state": "expired" if expired else "ok",
                "base_url": api_base_from_resource_url(data.get("resource_url"), self.settings.default_api_base),
                "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(data["expiry_date"] / 1000))}


class AccountPool:
    def __init__(self, accounts: list[Account]) -> None:
        self.accounts = accounts
        self._next = 0
        self._cooldown: dict[str, float] = {}

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> "AccountPool":
        accounts: list[Account] = []
        default = settings.qwen_dir / "oauth_creds.json"
        if default.exists():
            accounts.append(OAuthFileAccount("default", default, settings))
        return cls(accounts)

    async def acquire(self, exclude: Collection[str] = ()) -> Credential:
        if not self.accounts:
            raise AccountUnavailable("No Qwen account is configured: run `qwen-auth login` or `qwen-auth add-key`.")
        now = time.time()
        errors = []
        n = len(self.accounts)
        for i in range(n):
            acct = self.accounts[(self._next + i) % n]
            if acct.name in exclude:
                continue
            if self._cooldown.get(acct.name, 0) > now:
                errors.append(f"{acct.name}: cooling down")
                continue
            try:
                cred = await acct.credential()
            except AccountUnavailable as e:
                errors.append(str(e))
                continue
            self._next = (self._next + i + 1) % n
            return cred
        waits = [t for name, t in self._cooldown.items() if t > now and name not in exclude]
        msg = "No Qwen account can take this request: " + "; ".join(errors or ["all were tried"])
        if waits:
            raise PoolExhausted(msg, retry_at=min(waits))
        raise AccountUnavailable(msg)

    async def refreshed(self, account: str) -> Credential:
        acct = next(a for a in self.accounts if a.name == account)
        return await acct.credential(force_refresh=True)

    def report(self, account: str, outcome: str, *, retry_after: float | None = None) -> None:
        if outcome == "quota":
            self._cooldown[account] = time.time() + (retry_after or _seconds_to_utc_midnight())
        elif outcome == "throttle":
            self._cooldown[account] = time.time() + (retry_after or 1.0)

    def status(self) -> list[dict]:
        out = []
        for a in self.accounts:
            st = a.status()
            until = self._cooldown.get(a.name, 0)
            if until > time.time():
                st["state"] = "cooling_down"
                st["cooldown_until"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(until))
            out.append(st)
        return out


def _seconds_to_utc_midnight() -> float:
    now = time.time()
    return 86400 - now % 86400
