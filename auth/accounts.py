"""The two kinds of account: a Qwen OAuth login (qwen-code's file, or an extra one) and an API key.

Also `Registry` (`<state_dir>/accounts.json`: extra logins, key accounts, whether the default login is
detached) and `save_login` (what a finished device flow writes, for the CLI and for remote login).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from pathlib import Path
from types import MappingProxyType

from . import oauth
from .base import KEY, OAUTH, Account, AccountUnavailable, Credential
from .credfile import (LOGIN_ORDER, REFRESH_ORDER, CredentialFileError, FileLock, LockTimeout, atomic_write,
                       is_fresh, read_creds, write_creds)
from .endpoints import api_base_from_resource_url
from .settings import AuthSettings
from .state import AccountState

DEFAULT = "default"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
FAILED_REFRESH_HOLD_S = 5.0  # after a failed (network/server) refresh, wait this long before trying again
NEEDS_LOGIN_MESSAGE = "Refresh token expired or invalid; run `{hint}`"


def iso(ts: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else None


def check_name(name: str, *, allow_default: bool = False) -> str:
    """Account names end up in file names: letters, digits, `.`, `_`, `-` only."""
    if not NAME_RE.match(name or "") or name.endswith(".json"):
        raise ValueError(f"invalid account name {name!r}: use letters, digits, '.', '_' or '-' (max 64)")
    if name == DEFAULT and not allow_default:
        raise ValueError("'default' is the name of qwen-code's own login: use `qwen-auth login` for it")
    return name


def login_hint(name: str) -> str:
    return "qwen-auth login" if name == DEFAULT else f"qwen-auth add {name}"


class _FileSig:
    """What tells us a credential file changed: mtime (qwen-code's test), plus inode and size."""

    __slots__ = ("mtime", "ino", "size")

    def __init__(self, st: os.stat_result) -> None:
        self.mtime, self.ino, self.size = st.st_mtime, st.st_ino, st.st_size

    def __eq__(self, other) -> bool:
        return isinstance(other, _FileSig) and (self.mtime, self.ino, self.size) == (other.mtime, other.ino,
                                                                                     other.size)


class OAuthAccount(Account):
    """A login in `oauth_creds.json` (default) or `oauth_creds_<name>.json`, refreshed like qwen-code:
    lazily (when within 30 s of expiry, or forced after a 401), single-flight in this process, under
    qwen-code's lock file across processes, re-reading the file first in case someone else refreshed."""

    kind = OAUTH

    def __init__(self, name: str, path: Path, settings: AuthSettings, state: AccountState, *,
                 lock_stale_after: float | None = None, file_check_s: float | None = None) -> None:
        self.name = name
        self.path = path
        self.lock_path = path.with_suffix(".lock")
        self.settings = settings
        self.state = state
        self.lock_stale_after = settings.lock_stale_s if lock_stale_after is None else lock_stale_after
        self.file_check_s = settings.file_check_s if file_check_s is None else file_check_s
        self._creds: dict | None = None
        self._sig: _FileSig | None = None
        self._checked = float("-inf")
        self._inflight: asyncio.Future | None = None
        self._failure: AccountUnavailable | None = None
        self._failed_until = 0.0

    @property
    def login_hint(self) -> str:
        return login_hint(self.name)

    # ---- the file ---------------------------------------------------------------------------------

    def _stat(self) -> _FileSig | None:
        try:
            return _FileSig(self.path.stat())
        except FileNotFoundError:
            return None

    def _load(self, *, force: bool = False) -> dict:
        """The login, re-read when the file changed (stat at most every file_check_s). Raises
        AccountUnavailable when there is none or it needs a new login. Blocking but tiny: one stat."""
        now = time.monotonic()
        if force or self._creds is None or now - self._checked >= self.file_check_s:
            self._checked = now
            sig = self._stat()
            if sig is None:
                self._creds, self._sig = None, None
                raise AccountUnavailable(f"{self.name}: no Qwen login ({self.path.name} is missing); run "
                                         f"`{self.login_hint}`", needs_login=True)
            if self._creds is None or sig != self._sig:
                try:
                    creds = read_creds(self.path)
                except CredentialFileError as e:
                    if self._creds is None:
                        raise AccountUnavailable(f"{self.name}: {e}; run `{self.login_hint}`") from e
                    creds = None  # a half-written file from another writer: keep what we had, look again
                if creds is not None:
                    self._creds, self._sig = creds, sig
                    self._failure = None
            if self._creds is None:
                raise AccountUnavailable(f"{self.name}: no Qwen login; run `{self.login_hint}`", needs_login=True)
        st = self.state.get(self.name)
        if st["needs_login"]:
            if self._sig is not None and self._sig.mtime > st["login_mtime"]:  # logged in again (here or qwen-code)
                self.state.set(self.name, needs_login=False, last_error=None)
            else:
                raise AccountUnavailable(f"{self.name}: {NEEDS_LOGIN_MESSAGE.format(hint=self.login_hint)}",
                                         needs_login=True)
        return self._creds

    def _credential(self, creds: dict) -> Credential:
        base = api_base_from_resource_url(creds.get("resource_url"), self.settings.default_api_base)
        return Credential(self.name, OAUTH, base, creds["access_token"])

    def _adopt(self, creds: dict) -> None:
        self._creds = creds
        self._sig = self._stat()
        self._checked = time.monotonic()
        self._failure = None

    # ---- the interface ------------------------------------------------------------------------------

    async def credential(self, *, force_refresh: bool = False) -> Credential:
        creds = self._load()
        if is_fresh(creds) and not force_refresh:
            return self._credential(creds)
        if not force_refresh and self._failure is not None and time.monotonic() < self._failed_until:
            raise AccountUnavailable(str(self._failure))  # do not hammer a failing OAuth server
        if self._inflight is None or self._inflight.done():  # single flight: every waiter shares one refresh
            fut = asyncio.ensure_future(self._refresh(creds["access_token"], force_refresh))
            self._inflight = fut
            fut.add_done_callback(self._flight_done)
        return self._credential(await asyncio.shield(self._inflight))

    def _flight_done(self, fut: asyncio.Future) -> None:
        if self._inflight is fut:
            self._inflight = None
        if not fut.cancelled():
            fut.exception()  # retrieved: no "never retrieved" warning when nobody waited

    async def _refresh(self, seen_token: str, force: bool) -> dict:
        lock = FileLock(self.lock_path, stale_after=self.lock_stale_after)
        try:
            await asyncio.to_thread(lock.acquire)
        except LockTimeout as e:
            raise self._failed(f"{self.name}: {e}") from e
        beat = asyncio.ensure_future(self._heartbeat(lock))
        try:
            sig = await asyncio.to_thread(self._stat)
            try:
                current = await asyncio.to_thread(read_creds, self.path)
            except CredentialFileError as e:
                raise self._failed(f"{self.name}: {e}; run `{self.login_hint}`") from e
            if current is None:
                raise AccountUnavailable(f"{self.name}: the login file {self.path.name} disappeared; run "
                                         f"`{self.login_hint}`", needs_login=True)
            # Another process (qwen-code, another gateway) may have refreshed while we waited for the lock.
            if is_fresh(current) and (not force or current["access_token"] != seen_token):
                self._adopt(current)
                return current
            try:
                data = await oauth.refresh(self.settings, current["refresh_token"])
            except oauth.RefreshRejected as e:
                # Never delete or rewrite the file (qwen-code would delete it): mark, persist, tell.
                self.state.set(self.name, needs_login=True, login_mtime=sig.mtime if sig else 0.0,
                               last_error=str(e))
                raise AccountUnavailable(f"{self.name}: {NEEDS_LOGIN_MESSAGE.format(hint=self.login_hint)}",
                                         needs_login=True) from e
            except oauth.OAuthError as e:
                raise self._failed(f"{self.name}: {e}") from e
            new = oauth.creds_from_token(data, previous=current)
            try:
                await asyncio.to_thread(write_creds, self.path, new, REFRESH_ORDER)
            except OSError as e:  # the server has rotated the token: keep it in memory at least
                self._creds = new
                self.state.set(self.name, last_error=f"could not save the refreshed login ({type(e).__name__})")
                return new
            self._adopt(new)
            if self.state.get(self.name)["last_error"]:
                self.state.set(self.name, last_error=None)
            return new
        finally:
            beat.cancel()
            await asyncio.to_thread(lock.release)

    async def _heartbeat(self, lock: FileLock) -> None:
        """Touch the lock while a slow refresh runs so others do not break it as stale (10 s)."""
        every = max(self.lock_stale_after / 3, 0.05)
        while True:
            await asyncio.sleep(every)
            await asyncio.to_thread(lock.touch)

    def _failed(self, message: str) -> AccountUnavailable:
        err = AccountUnavailable(message)
        self._failure = err
        self._failed_until = time.monotonic() + FAILED_REFRESH_HOLD_S
        self.state.set(self.name, last_error=message)
        return err

    def status(self) -> dict:
        out = {"name": self.name, "kind": self.kind, "state": "ok", "base_url": None, "expires_at": None,
               "last_error": None, "file": str(self.path)}
        try:
            creds = self._load(force=True)
        except AccountUnavailable as e:
            if e.needs_login and self._sig is not None:
                state = "needs_login"
            elif self.path.exists():
                state = "error"
            else:
                state = "missing"
            last = self.state.get(self.name)["last_error"] if state == "needs_login" else None
            out.update(state=state, last_error=str(e) + (f" ({last})" if last else ""))
            if self._creds is not None:
                out.update(self._describe(self._creds))
            return out
        out.update(self._describe(creds))
        last = self.state.get(self.name)["last_error"]
        if self._inflight is not None and not self._inflight.done():
            state = "refreshing"
        elif is_fresh(creds):
            state = "ok"
        elif self._failure is not None:
            state = "error"
        else:
            state = "expired"  # refreshed at the next request
        out.update(state=state, last_error=last)
        return out

    def _describe(self, creds: dict) -> dict:
        return {"base_url": api_base_from_resource_url(creds.get("resource_url"), self.settings.default_api_base),
                "expires_at": iso(creds["expiry_date"] / 1000)}


class KeyAccount(Account):
    """A DashScope / Model Studio / Coding Plan (or any OpenAI-compatible Qwen) API key, read from an
    environment variable at run time (`key_env`) or stored in accounts.json (`key`, file mode 0600)."""

    kind = KEY

    def __init__(self, spec: dict) -> None:
        self.name = spec["name"]
        self.base_url = str(spec["base_url"]).rstrip("/")
        self.key_env = spec.get("key_env")
        self._key = spec.get("key")
        self.model_map = MappingProxyType({str(k): str(v) for k, v in (spec.get("model_map") or {}).items()})
        self.default_model = spec.get("default_model")
        self.embeddings = bool(spec.get("embeddings"))

    def _key_value(self) -> str:
        key = os.environ.get(self.key_env, "") if self.key_env else (self._key or "")
        key = key.strip()
        if not key:
            where = f"env var {self.key_env} is not set" if self.key_env else "no key is stored"
            raise AccountUnavailable(f"{self.name}: {where}")
        return key

    async def credential(self, *, force_refresh: bool = False) -> Credential:
        return Credential(self.name, KEY, self.base_url, self._key_value(), model_map=self.model_map,
                          default_model=self.default_model, embeddings=self.embeddings)

    def status(self) -> dict:
        out = {"name": self.name, "kind": self.kind, "state": "ok", "base_url": self.base_url, "expires_at": None,
               "last_error": None, "key": f"${self.key_env}" if self.key_env else "stored in accounts.json",
               "default_model": self.default_model, "model_map": dict(self.model_map),
               "embeddings": self.embeddings}
        try:
            self._key_value()
        except AccountUnavailable as e:
            out.update(state="missing", last_error=str(e))
        return out


class BrokenAccount(Account):
    """An accounts.json entry that cannot be used as written: shown in status, never chosen."""

    def __init__(self, name: str, kind: str, problem: str) -> None:
        self.name = name
        self.kind = kind
        self.problem = problem

    async def credential(self, *, force_refresh: bool = False) -> Credential:
        raise AccountUnavailable(f"{self.name}: {self.problem}")

    def status(self) -> dict:
        return {"name": self.name, "kind": self.kind, "state": "error", "base_url": None, "expires_at": None,
                "last_error": self.problem}


class RegistryError(Exception):
    pass


class Registry:
    """`<state_dir>/accounts.json` (mode 0600, written atomically):

        {"version": 1, "detach_default": false,
         "accounts": [{"name": "work", "kind": "oauth"},
                      {"name": "ds", "kind": "key", "base_url": "...", "key_env": "DASHSCOPE_API_KEY",
                       "default_model": "qwen3-coder-plus", "model_map": {}, "embeddings": true}]}
    """

    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        self.path = settings.accounts_path

    def load(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"version": 1, "accounts": []}
        except (OSError, ValueError) as e:
            raise RegistryError(f"{self.path} is unreadable ({type(e).__name__}); fix or remove it") from e
        if not isinstance(data, dict) or not isinstance(data.get("accounts", []), list):
            raise RegistryError(f"{self.path} is not an account list; fix or remove it")
        data.setdefault("accounts", [])
        return data

    def save(self, data: dict) -> None:
        data = {"version": 1, **data}
        atomic_write(self.path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")

    def find(self, data: dict, name: str) -> dict | None:
        return next((s for s in data["accounts"] if isinstance(s, dict) and s.get("name") == name), None)

    def put(self, spec: dict) -> None:
        data = self.load()
        data["accounts"] = [s for s in data["accounts"] if not (isinstance(s, dict) and s.get("name") == spec["name"])]
        data["accounts"].append(spec)
        self.save(data)

    def signature(self) -> tuple | None:
        """Changes when accounts.json or the default login's presence does (for automatic reloads)."""
        try:
            st = self.path.stat()
            reg = (st.st_mtime_ns, st.st_ino, st.st_size)
        except FileNotFoundError:
            reg = None
        return reg, self.settings.default_creds_path.exists()

    def accounts(self, state: AccountState) -> list[Account]:
        data = self.load()
        out: list[Account] = []
        default = self.settings.default_creds_path
        if not data.get("detach_default") and default.exists():
            out.append(OAuthAccount(DEFAULT, default, self.settings, state))
        seen = {a.name for a in out}
        for spec in data["accounts"]:
            acct = self._build(spec, state)
            if acct is None or acct.name in seen:
                continue
            seen.add(acct.name)
            out.append(acct)
        return out

    def _build(self, spec, state: AccountState) -> Account | None:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            return None
        name, kind = spec["name"], spec.get("kind")
        try:
            check_name(name)
        except ValueError as e:
            return BrokenAccount(name, str(kind), str(e))
        if kind == OAUTH:
            return OAuthAccount(name, self.settings.creds_path(name), self.settings, state)
        if kind == KEY:
            if not isinstance(spec.get("base_url"), str) or "://" not in spec["base_url"]:
                return BrokenAccount(name, KEY, "no valid base_url in accounts.json")
            if not spec.get("key_env") and not spec.get("key"):
                return BrokenAccount(name, KEY, "neither key_env nor key in accounts.json")
            return KeyAccount(spec)
        return BrokenAccount(name, str(kind), f"unknown account kind {kind!r} in accounts.json")


def save_login(settings: AuthSettings, name: str | None, token: dict) -> tuple[Path, dict]:
    """Store a finished device login as qwen-code does (LOGIN_ORDER, 0600, atomic) and register it:
    the default account is re-attached, an extra one is added to accounts.json."""
    name = name or DEFAULT
    check_name(name, allow_default=True)
    path = settings.creds_path(name)
    reg = Registry(settings)
    data = reg.load()
    other = reg.find(data, name)
    if other is not None and other.get("kind") != OAUTH:
        raise ValueError(f"account {name!r} already exists as a {other.get('kind')} account")
    creds = oauth.creds_from_token(token)
    write_creds(path, creds, LOGIN_ORDER)
    if name == DEFAULT:
        if data.pop("detach_default", None) is not None:
            reg.save(data)
    elif other is None:
        data["accounts"].append({"name": name, "kind": OAUTH})
        reg.save(data)
    state = AccountState(settings.state_db_path)
    try:
        if state.get(name)["needs_login"]:
            state.set(name, needs_login=False, last_error=None)
    finally:
        state.close()
    return path, creds
