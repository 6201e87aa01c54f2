"""An API key of a Qwen plan (Model Studio pay-as-you-go, Coding Plan, Token Plan, or any OpenAI-compatible
Qwen endpoint), and the placeholder for an accounts.json entry that cannot be used as written."""

from __future__ import annotations

import hashlib
import os
import time
from types import MappingProxyType

from .. import provider_registry
from ..accounts import KEY, AccountUnavailable, Credential
from .account import Account
from .state import AccountState


CHECKED = "key check (qwen-auth add-key, "  # a failed check's note, in the account's last_error


class KeyAccount(Account):
    """The key is read from an environment variable at run time (`key_env`) or stored in accounts.json
    (`key`, file mode 0600). A key is never refreshed: after a 401 (`credential(force_refresh=True)`) the
    account is *refused* — Qwen will not take this key — and stays so, across restarts, until the key
    changes. The state keeps that as a login's refusal is kept: `needs_login`, and in `login_mtime` (which
    tells a login's files apart) a 48-bit fingerprint of the refused key (of its SHA-256: never the key)."""

    kind = KEY
    provider = ""  # its spec's, else its kind's (set in __init__: Account.provider is its kind's)

    def __init__(self, spec: dict, state: AccountState | None = None) -> None:
        self.name = spec["name"]
        self.base_url = str(spec["base_url"]).rstrip("/")
        self.key_env = spec.get("key_env")
        self._key = spec.get("key")
        self.model_map = MappingProxyType({str(k): str(v) for k, v in (spec.get("model_map") or {}).items()})
        self.default_model = spec.get("default_model")
        self.embeddings = bool(spec.get("embeddings"))
        self.provider = str(spec.get("provider") or provider_registry.of_kind(KEY))  # the server it is a key of
        self.plans = provider_registry.plans(self.provider)  # its provider's keyed plans (None: a base is a base)
        self.billing = self.plans.billing_of(self.base_url) if self.plans is not None else ""
        # keys of one Alibaba Cloud account share its limits (groups.py); a Coding Plan's monthly quota comes back
        # on its subscription's day of the month (windows.py)
        self.group: str | None = str(spec["group"]) if spec.get("group") else None
        self.month_day: int | None = spec.get("month_day") if isinstance(spec.get("month_day"), int) else None
        self.state = state
        row = state.get(self.name) if state is not None else None
        self._refused: float | None = row["login_mtime"] if row and row["needs_login"] else None
        self._made: Credential | None = None  # the last credential handed out (its key read again every time)

    def _key_value(self) -> str:
        key = os.environ.get(self.key_env, "") if self.key_env else (self._key or "")
        key = key.strip()
        if not key:
            where = f"env var {self.key_env} is not set" if self.key_env else "no key is stored"
            raise AccountUnavailable(f"{self.name}: {where}")
        return key

    def ready(self) -> Credential:
        key = self._key_value()
        if self._refused is not None:  # only then is the key hashed: not on every request
            self._check_refused(key)
        made = self._made
        if made is not None and made.token == key:  # the same key: the same (immutable) credential
            return made
        self._made = made = Credential(self.name, KEY, self.base_url, key, model_map=self.model_map,
                                       default_model=self.default_model, embeddings=self.embeddings,
                                       billing=self.billing, provider=self.provider)
        return made

    async def credential(self, *, force_refresh: bool = False, refused: str | None = None) -> Credential:
        if force_refresh:  # Qwen answered 401: a key cannot be refreshed, this one is refused
            key = self._key_value()
            if refused is None or refused == key:
                self._refused = fingerprint(key)
                if self.state is not None:
                    self.state.set(self.name, needs_login=True, login_mtime=self._refused,
                                   last_error=self.refused_message())
                raise AccountUnavailable(self.refused_message())
        return self.ready()

    def _check_refused(self, key: str) -> None:
        if fingerprint(key) == self._refused:
            raise AccountUnavailable(self.refused_message())
        self._refused = None  # another key since: try it
        if self.state is not None:
            self.state.set(self.name, needs_login=False, login_mtime=0.0, last_error=None)

    def refused_message(self) -> str:
        """What a refused key means and what to do (the account and its variable; never the key)."""
        if self.key_env:
            where, fix = f"${self.key_env}", f"put a valid key for {self.base_url} in ${self.key_env} and restart the gateway"
        else:
            where, fix = "stored in accounts.json", f"store a valid one (`qwen-auth add-key {self.name} --replace ...`)"
        return (f"Qwen refused the key of account {self.name} ({where}) with 401: {fix}; `qwen-auth status` shows "
                "the account as refused until then.")

    def key_warning(self) -> str | None:
        """Why the key probably does not fit its endpoint's plan (never the key itself), or None."""
        if self.plans is None:
            return None
        try:
            return self.plans.key_warning(self._key_value(), self.base_url)
        except AccountUnavailable:
            return None

    def note_check(self, worked: bool, line: str) -> None:
        """What `qwen-auth add-key`'s check found, kept for `qwen-auth status` and /health: a check that failed is
        the account's note (the key may still be right: offline, not active yet) until the key serves a request
        (pool.report clears it) or a check works; one that works clears a refusal of the key too."""
        if self.state is None:
            return
        if worked:
            self.state.set(self.name, needs_login=False, login_mtime=0.0, last_error=None)
        else:
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            self.state.set(self.name, last_error=f"{CHECKED}{when}): {line}")

    def status(self) -> dict:
        out = {"name": self.name, "kind": self.kind, "state": "ok", "base_url": self.base_url, "expires_at": None,
               "last_error": None, "key": f"${self.key_env}" if self.key_env else "stored in accounts.json",
               "default_model": self.default_model, "model_map": dict(self.model_map),
               "embeddings": self.embeddings, "billing": self.billing, "provider": self.provider}
        if self.group:
            out["group"] = self.group
        try:
            key = self._key_value()
        except AccountUnavailable as e:
            out.update(state="missing", last_error=str(e))
            return out
        try:
            if self._refused is not None:
                self._check_refused(key)
        except AccountUnavailable:
            out.update(state="refused", last_error=self.refused_message())
        else:  # a failed check of add-key's, until the key serves (pool.report clears it)
            note = self.state.get(self.name)["last_error"] if self.state is not None else None
            if note and note.startswith(CHECKED):
                out["last_error"] = note
        return out


def fingerprint(key: str) -> float:
    """A 48-bit fingerprint of a key (of its SHA-256), exact in a float column: which key was refused."""
    return float(int.from_bytes(hashlib.sha256(key.encode()).digest()[:6], "big"))


class BrokenAccount(Account):
    """An accounts.json entry that cannot be used as written: shown in status, never chosen."""

    def __init__(self, name: str, kind: str, problem: str) -> None:
        self.name = name
        self.kind = kind
        self.problem = problem

    def ready(self) -> Credential:
        raise AccountUnavailable(f"{self.name}: {self.problem}")

    async def credential(self, *, force_refresh: bool = False, refused: str | None = None) -> Credential:
        return self.ready()

    def status(self) -> dict:
        return {"name": self.name, "kind": self.kind, "state": "error", "base_url": None, "expires_at": None,
                "last_error": self.problem}
