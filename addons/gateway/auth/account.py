"""What every kind of account is to the pool (upstream/pool/pool.py): one credential at a time, and its state as JSON.

The pool hands the gateway `Credential`s through `Pool` (the core's accounts.py); behind it each login or key
is an `Account`: an OAuth login (oauth_account.py), an API key (key_account.py), a web session (web_account.py).
"""

from __future__ import annotations

import abc

from .. import provider_registry
from ..accounts import Credential


class Account(abc.ABC):
    name: str
    kind: str

    @property
    def provider(self) -> str:
        """The provider that serves it (providers.py): its kind's, unless the account names another."""
        return provider_registry.of_kind(self.kind)

    @abc.abstractmethod
    async def credential(self, *, force_refresh: bool = False, refused: str | None = None) -> Credential:
        """A usable credential, refreshed first if it is (or `force_refresh` says it is) stale.
        `refused`: the token upstream refused (see Pool.refreshed). Raises AccountUnavailable."""

    def ready(self) -> Credential | None:
        """The credential at once when no I/O is needed (the hot path), None when `credential()` must be
        awaited (a refresh is due). Raises AccountUnavailable."""
        return None

    @property
    def refreshing(self) -> bool:
        """True while a refresh is under way (the pool then serves another account instead of waiting)."""
        return False

    def record_punish(self, why: str = "") -> None:
        """The upstream answered with an anti-bot page (web sessions park themselves); others ignore it."""
        return None

    @abc.abstractmethod
    def status(self) -> dict:
        """JSON-safe state for /health and `qwen-auth status`: never a token or key."""
