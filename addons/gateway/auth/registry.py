"""`<state_dir>/accounts.json`: which accounts exist besides qwen-code's own login, and `save_login`
(what a finished device flow writes, for the CLI and for remote login).

    {"version": 1, "detach_default": false,
     "accounts": [{"name": "work", "kind": "oauth"},
                  {"name": "ds", "kind": "key", "base_url": "...", "key_env": "DASHSCOPE_API_KEY",
                   "default_model": "qwen3-coder-plus", "model_map": {}, "embeddings": true},
                  {"name": "chat", "kind": "web"}]}

Mode 0600, written atomically (a key given with --key-stdin is stored here).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..accounts import KEY, OAUTH, WEB
from ..settings.auth import AuthSettings
from . import oauth
from .account import Account
from .credfile import LOGIN_ORDER, atomic_write, write_creds
from .filelock import FileLock
from .key_account import BrokenAccount, KeyAccount
from .names import DEFAULT, check_name
from .oauth_account import OAuthAccount
from .state import AccountState
from .web_account import WebAccount


class RegistryError(Exception):
    pass


class AccountExists(ValueError):
    """put() of a name that is taken, without replace=True."""


class Registry:
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

    def put(self, spec: dict, *, replace: bool = False) -> dict | None:
        """Add `spec`; an entry of the same name is replaced only with `replace=True` (else AccountExists).
        Returns the entry it replaced, if any."""
        data = self.load()
        old = self.find(data, spec["name"])
        if old is not None and not replace:
            raise AccountExists(f"account {spec['name']!r} already exists")
        data["accounts"] = [s for s in data["accounts"] if s is not old]
        data["accounts"].append(spec)
        self.save(data)
        return old

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
            return KeyAccount(spec, state)
        if kind == WEB:  # the session lives in its own file (web_session.py); off unless opted in
            urls = {k: spec[k] for k in ("base_url", "auth_base_url") if isinstance(spec.get(k), str) and spec[k]}
            return WebAccount(name, self.settings.web_session_path(name), self.settings, state, **urls)
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
    # Under the refresh lock: a refresh running now cannot write its result over this login afterwards, and
    # nobody takes this write's temp file for one a killed refresh left (stranded.py).
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with FileLock(path.with_suffix(".lock"), stale_after=settings.lock_stale_s):
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


def same_account(a: Account, b: Account) -> bool:
    """Whether a freshly read account is the one already loaded (which then keeps its object and state)."""
    if type(a) is not type(b) or a.kind != b.kind:
        return False
    keys = ("path", "base_url", "auth_base_url", "key_env", "_key", "model_map", "default_model", "embeddings",
            "problem", "group", "month_day", "provider")
    return all(getattr(a, k, None) == getattr(b, k, None) for k in keys)
