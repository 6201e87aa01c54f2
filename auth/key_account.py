"""An API key of a Qwen plan (Model Studio pay-as-you-go, Coding Plan, Token Plan, or any OpenAI-compatible
Qwen endpoint), and the placeholder for an accounts.json entry that cannot be used as written."""

from __future__ import annotations

import os
from types import MappingProxyType

from .base import KEY, Account, AccountUnavailable, Credential
from .plans import billing_of, key_warning, plan_of_url


class KeyAccount(Account):
    """The key is read from an environment variable at run time (`key_env`) or stored in accounts.json
    (`key`, file mode 0600). A key is never refreshed: `credential(force_refresh=True)` returns it as is."""

    kind = KEY

    def __init__(self, spec: dict) -> None:
        self.name = spec["name"]
        self.base_url = str(spec["base_url"]).rstrip("/")
        self.key_env = spec.get("key_env")
        self._key = spec.get("key")
        self.model_map = MappingProxyType({str(k): str(v) for k, v in (spec.get("model_map") or {}).items()})
        self.default_model = spec.get("default_model")
        self.embeddings = bool(spec.get("embeddings"))
        self.billing = billing_of(self.base_url)

    def _key_value(self) -> str:
        key = os.environ.get(self.key_env, "") if self.key_env else (self._key or "")
        key = key.strip()
        if not key:
            where = f"env var {self.key_env} is not set" if self.key_env else "no key is stored"
            raise AccountUnavailable(f"{self.name}: {where}")
        return key

    def ready(self) -> Credential:
        return Credential(self.name, KEY, self.base_url, self._key_value(), model_map=self.model_map,
                          default_model=self.default_model, embeddings=self.embeddings,
                          billing=self.billing)

    async def credential(self, *, force_refresh: bool = False, refused: str | None = None) -> Credential:
        return self.ready()

    def key_warning(self) -> str | None:
        """Why the key probably does not fit its endpoint's plan (never the key itself), or None."""
        try:
            return key_warning(self._key_value(), plan_of_url(self.base_url))
        except AccountUnavailable:
            return None

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

    def ready(self) -> Credential:
        raise AccountUnavailable(f"{self.name}: {self.problem}")

    async def credential(self, *, force_refresh: bool = False, refused: str | None = None) -> Credential:
        return self.ready()

    def status(self) -> dict:
        return {"name": self.name, "kind": self.kind, "state": "error", "base_url": None, "expires_at": None,
                "last_error": self.problem}
