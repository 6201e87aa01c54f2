"""The one interface between the gateway and every kind of credential.

The gateway asks the pool for a `Credential`, sends one upstream request with it and
reports what happened. It never looks inside an account: OAuth files, refresh, locks and
API keys all live behind `Account`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

OAUTH = "oauth"
KEY = "key"


@dataclass(frozen=True)
class Credential:
    """What one upstream request needs. `token` is never shown by repr()."""

    account: str
    kind: str  # OAUTH or KEY
    base_url: str  # API base without a trailing slash, e.g. https://portal.qwen.ai/v1
    token: str = field(repr=False)
    # Upstream model ids differ (coder-model is OAuth-only): an account may bring its own map.
    model_map: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    default_model: str | None = None
    embeddings: bool = False  # whether this upstream serves /embeddings


class AccountUnavailable(Exception):
    """An account cannot give a credential now. The message is shown to users: no secrets."""

    def __init__(self, message: str, *, needs_login: bool = False, retry_at: float | None = None) -> None:
        super().__init__(message)
        self.needs_login = needs_login
        self.retry_at = retry_at


class Account(abc.ABC):
    name: str
    kind: str

    @abc.abstractmethod
    async def credential(self, *, force_refresh: bool = False) -> Credential:
        """A usable credential, refreshed first if it is (or `force_refresh` says it is) stale.
        Raises AccountUnavailable."""

    @abc.abstractmethod
    def status(self) -> dict:
        """JSON-safe state for /health and `qwen-auth status`: never a token or key."""
