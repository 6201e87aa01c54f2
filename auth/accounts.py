"""The two kinds of account: a Qwen OAuth login (qwen-code's file) and an API key."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from types import MappingProxyType

from . import oauth
from .base import KEY, OAUTH, Account, AccountUnavailable, Credential
from .credfile import REFRESH_ORDER, CredentialFileError, FileLock, is_fresh, read_creds, write_creds
from .endpoints import api_base_from_resource_url
from .settings import AuthSettings
from .state import AccountState

FILE_CHECK_S = 5.0  # re-stat the credential file at most this often (qwen-code's cache check)


def _iso(ts: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else None


class OAuthAccount(Account):
    """A login in `oauth_creds.json` (default) or `oauth_creds_<name>.json`, refreshed like qwen-code."""

    kind = OAUTH

    def __init__(self, name: str, path: Path, settings: AuthSettings, state: AccountState,
                 lock_stale_after: float = 10.0) -> None:
        self.name = name
        self.path = path
        self.lock_path = path.with_suffix(".lock")
        self.settings = settings
        self.state = state
        self.lock_stale_after = lock_stale_after
        self._creds: dict | None = None
        self._mtime = 0.0
        self._checked = 0.0
        self._inflight: asyncio.Future | None = None

    @property
    def login_hint(self) -> str:
        return "qwen-auth login" if self.name == "default" else f"qwen-auth add {self.name}"

    def _load(self, *, force: bool = False) -> dict:
        now = time.monotonic()
        if force or self._creds is None or now - self._checked >= FILE_CHECK_S:
            self._checked = now
            try:
                mtime = self.path.stat().st_mtime
            except FileNotFoundError:
                self._creds = None
                raise AccountUnavailable(f"{self.name}: no Qwen login ({self.path.name} is missing); run "
                                         f"`{self.login_hint}`", needs_login=True)
            if force or self._creds is None or mtime > self._mtime:
                try:
                    self._creds = read_creds(self.path)
                except CredentialFileError as e:
                    raise AccountUnavailable(f"{self.name}: {e}; run `{self.login_hint}`") from e
                self._mtime = mtime
        if self._creds is None:
            raise AccountUnavailable(f"{self.name}: no Qwen login; run `{self.login_hint}`", needs_login=True)
        st = self.state.get(self.name)
        if st["needs_login"]:
            if self._mtime > st["login_mtime"]:  # logged in again (here or by qwen-code)
                self.state.set(self.name, needs_login=False, last_error=None)
            else:
                raise AccountUnavailable(f"{self.name}: refresh token expired or invalid; run `{self.login_hint}`",
                                         needs_login=True)
        return self._creds

    def _credential(self, creds: dict) -> Credential:
        base = api_base_from_resource_url(creds.get("resource_url"), self.settings.default_api_base)
        return Credential(self.name, OAUTH, base, creds["access_token"])

    async def credential(self, *, force_refresh: bool = False) -> Credential:
        creds = self._load()
        if is_fresh(creds) and not force_refresh:
            return self._credential(creds)
        if self._inflight is None:  # single flight: every waiter shares one refresh
            self._inflight = asyncio.ensure_future(self._refresh(creds["access_token"], force_refresh))
            self._inflight.add_done_callback(lambda _f: setattr(self, "_inflight", None))
        return self._credential(await asyncio.shield(self._inflight))

    async def _refresh(self, seen_token: str, force: bool) -> dict:
        lock = FileLock(self.lock_path, stale_after=self.lock_stale_after)
        try:
            await asyncio.to_thread(lock.acquire)
        except TimeoutError as e:
            raise AccountUnavailable(f"{self.name}: {e}") from e
        try:
            current = await asyncio.to_thread(read_creds, self.path)
            if current is None:
                raise AccountUnavailable(f"{self.name}: the login file disappeared; run `{self.login_hint}`",
                                         needs_login=True)
            # Another process (qwen-code, another gateway) may have refreshed while we waited.
            if is_fresh(current) and (not force or current["access_token"] != seen_token):
                self._adopt(current)
                return current
            try:
                data = await oauth.refresh(self.settings, current["refresh_token"])
            except oauth.RefreshRejected as e:
                self.state.set(self.name, needs_login=True, login_mtime=self.path.stat().st_mtime,
                               last_error=str(e))
                raise AccountUnavailable(f"{self.name}: {e}; run `{self.login_hint}`", needs_login=True) from e
            except oauth.OAuthError as e:
                self.state.set(self.name, last_error=str(e))
                raise AccountUnavailable(f"{self.name}: {e}") from e
            new = oauth.creds_from_token(data, previous=current)
            await asyncio.to_thread(write_creds, self.path, new, REFRESH_ORDER)
            self._adopt(new)
            self.state.set(self.name, last_error=None)
            return new
        except CredentialFileError as e:
            raise AccountUnavailable(f"{self.name}: {e}") from e
        finally:
            await asyncio.to_thread(lock.release)

    def _adopt(self, creds: dict) -> None:
        self._creds = creds
        try:
            self._mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            pass

    def status(self) -> dict:
        out = {"name": self.name, "kind": self.kind, "file": str(self.path)}
        try:
            creds = self._load(force=True)
        except AccountUnavailable as e:
            return {**out, "state": "needs_login" if e.needs_login and self.path.exists() else "missing",
                    "last_error": str(e)}
        expiry = creds["expiry_date"] / 1000
        return {**out, "state": "refreshing" if self._inflight else ("ok" if is_fresh(creds) else "expired"),
                "base_url": api_base_from_resource_url(creds.get("resource_url"), self.settings.default_api_base),
                "expires_at": _iso(expiry), "last_error": self.state.get(self.name)["last_error"]}


class KeyAccount(Account):
    """A DashScope / Model Studio / Coding Plan (or any OpenAI-compatible Qwen) API key."""

    kind = KEY

    def __init__(self, spec: dict) -> None:
        self.name = spec["name"]
        self.base_url = spec["base_url"].rstrip("/")
        self.key_env = spec.get("key_env")
        self._key = spec.get("key")
        self.model_map = MappingProxyType(dict(spec.get("model_map") or {}))
        self.default_model = spec.get("default_model")
        self.embeddings = bool(spec.get("embeddings"))

    def _key_value(self) -> str:
        key = os.environ.get(self.key_env, "") if self.key_env else (self._key or "")
        if not key:
            where = f"environment variable {self.key_env} is not set" if self.key_env else "no key stored"
            raise AccountUnavailable(f"{self.name}: {where}")
        return key

    async def credential(self, *, force_refresh: bool = False) -> Credential:
        return Credential(self.name, KEY, self.base_url, self._key_value(), model_map=self.model_map,
                          default_model=self.default_model, embeddings=self.embeddings)

    def status(self) -> dict:
        out = {"name": self.name, "kind": self.kind, "base_url": self.base_url,
               "key": f"${self.key_env}" if self.key_env else "stored (0600)", "default_model": self.default_model}
        try:
            self._key_value()
            return {**out, "state": "ok"}
        except AccountUnavailable as e:
            return {**out, "state": "missing", "last_error": str(e)}


class Registry:
    """`<state_dir>/accounts.json`: extra logins and key accounts (0600, atomic)."""

    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        self.path = settings.state_dir / "accounts.json"

    def load(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"accounts": []}
        except (OSError, ValueError) as e:
            raise AccountUnavailable(f"{self.path} is unreadable ({type(e).__name__})") from e
        return data if isinstance(data, dict) and isinstance(data.get("accounts"), list) else {"accounts": []}

    def save(self, data: dict) -> None:
        self.settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f"{self.path.name}.tmp.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        os.replace(tmp, self.path)

    def accounts(self, state: AccountState) -> list[Account]:
        data = self.load()
        out: list[Account] = []
        default = self.settings.qwen_dir / "oauth_creds.json"
        if not data.get("detach_default") and default.exists():
            out.append(OAuthAccount("default", default, self.settings, state))
        for spec in data["accounts"]:
            if spec.get("kind") == KEY:
                out.append(KeyAccount(spec))
            elif spec.get("kind") == OAUTH:
                path = self.settings.qwen_dir / f"oauth_creds_{spec['name']}.json"
                out.append(OAuthAccount(spec["name"], path, self.settings, state))
        return out
