"""The one interface between the gateway and every kind of credential.

The gateway asks the pool for a `Credential`, sends one upstream request with it and
reports what happened. It never looks inside an account: OAuth files, refresh, locks and
API keys all live behind `Account` (auth/account.py), in the auth package that implements `Pool`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping, Protocol

from . import provider_registry


class Kind(enum.StrEnum):
    OAUTH = "oauth"  # Qwen Code OAuth login (refreshing token)
    KEY = "key"  # an API key of a Qwen plan (DashScope, Coding Plan, ...)
    WEB = "web"  # a Qwen Chat browser session (chat.qwen.ai): opt-in, see auth/web_account.py


OAUTH = Kind.OAUTH
KEY = Kind.KEY
WEB = Kind.WEB


class Outcome(enum.StrEnum):
    """What happened to one upstream request, as the gateway reports it to the pool."""

    OK = "ok"  # served: counted for today
    AUTH = "auth"  # 401: the caller retries once with `refreshed()`
    QUOTA = "quota"  # quota gone: cool down until the reset (or retry_after)
    THROTTLE = "throttle"  # rate limited: cool down retry_after (or a doubling backoff)
    ERROR = "error"  # anything else: no change
    PUNISHED = "punished"  # an anti-bot page (a web session): the account is parked until imported again
    PLAN_REFUSED = "plan_refused"  # its plan refused this client (the Coding Plan's 405): counted, nothing else
    UNREACHABLE = "unreachable"  # its server could not be reached (or said its engine is down) while another
    # account could take the request: cool down 1 s doubling up to 30 s, as a throttle does


class Window(enum.StrEnum):
    """What ran out, as DashScope says it (upstream/pool/windows.py: how long each keeps an account away).

    Quota windows (the account rotates out until the window ends): a Coding Plan's 5-hour, weekly and
    monthly request quotas, its hour-long `usage` throttle, a daily or free quota. Throttles (seconds):
    pay-as-you-go's requests and tokens per minute, its burst protection, a Coding Plan's concurrency."""

    FIVE_HOURS = "5h"
    WEEK = "week"
    MONTH = "month"
    USAGE = "usage"
    DAY = "day"
    RPM = "rpm"
    TPM = "tpm"
    BURST = "burst"
    CONCURRENCY = "concurrency"


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs 5x (object.__setattr__)
class Conversation:
    """The conversation a request continues (the client's dialect says which: api/conversation.py). Turns of
    one conversation go to the account that served it while it is usable: Qwen's prompt cache is per account."""

    key: str  # a digest: never the client's own text or ids
    source: str  # what it was read from: "session", "prompt_cache_key", "user", "opening"
    lifetime_s: float = 300.0  # how long its turn asked Qwen's cache to last (Qwen4: an hour), once the body is built
    # The digest of what it shares with other conversations (model, tools, system prompt), asked only of a new
    # one (None: too short for Qwen to cache): it may go where that prefix is cached already.
    prefix: Callable[[], str | None] | None = field(default=None, compare=False, repr=False)


class Capability(enum.StrEnum):
    """What an upstream request needs from the account's API, beyond chat completions."""

    CHAT = "chat"
    EMBEDDINGS = "embeddings"


@dataclass(frozen=True)
class Credential:
    """What one upstream request needs. `token` is never shown by repr()."""

    account: str
    kind: str  # OAUTH, KEY or WEB: how the credential is had
    base_url: str  # API base without a trailing slash, e.g. https://portal.qwen.ai/v1
    token: str = field(repr=False)
    # Upstream model ids differ (coder-model is OAuth-only): an account may bring its own map.
    model_map: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    default_model: str | None = None
    embeddings: bool = False  # whether this upstream serves /embeddings
    billing: str = ""  # how its requests are paid, for the price table (KeyPlans.billing_of): "payg:intl", …
    # A web session (WEB) sends more than a bearer token: its cookie jar (name -> value, for chat.qwen.ai)
    # and the browser's headers (user-agent, bx-*). Empty for the other kinds; never shown by repr().
    cookies: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    # The provider that serves the account (providers.py): a key may name its own (a self-hosted server's);
    # unnamed, its kind's (provider_registry.of_kind: the provider that claims the kind)
    provider: str = ""

    def __post_init__(self) -> None:
        if not self.provider:
            object.__setattr__(self, "provider", provider_registry.of_kind(self.kind))


class AccountUnavailable(Exception):
    """An account cannot give a credential now. The message is shown to users: no secrets."""

    def __init__(self, message: str, *, needs_login: bool = False, retry_at: float | None = None,
                 throttled: bool = False, transient: bool = False) -> None:
        super().__init__(message)
        self.needs_login = needs_login
        self.retry_at = retry_at
        self.throttled = throttled  # cooling down after rate limits: back within seconds, not at a quota reset
        # a refresh that failed for a network or server reason: a later request may be served (the others
        # need someone to act: a login, a key, an account added)
        self.transient = transient


class NotCapable(AccountUnavailable):
    """Usable accounts exist, but none serves the capability asked for (e.g. embeddings)."""


class Pool(Protocol):
    """The credential boundary: all the gateway knows of accounts."""

    async def acquire(self, exclude: Collection[str] = (), *, capability: Capability = Capability.CHAT,
                      conversation: Conversation | None = None, only: Callable[[str, str], bool] | None = None
                      ) -> Credential:
        """A credential from the next usable account that has `capability`, skipping `exclude`: the account
        that served `conversation` while it is usable; `only` (given an account's name and provider): the accounts
        the request may use at all (qwen_account_bindings; the others are never mentioned). Raises
        AccountUnavailable (NotCapable when only the capability is missing)."""

    async def refreshed(self, account: str, *, refused: str | None = None) -> Credential:
        """A freshly refreshed credential for `account` (after a 401). `refused`: the token upstream
        refused, when known; if the account already holds another one, that is returned without a refresh.
        At most one refresh per account per backoff window, however many 401s arrive."""

    def report(self, account: str, outcome: Outcome | str, *, retry_after: float | None = None,
               detail: str | None = None, window: Window | None = None) -> None:
        """What happened to a request sent with `account`'s credential (an Outcome; its string value
        is accepted too). `detail`: the upstream's own words for a QUOTA or THROTTLE, shown while the account
        cools down; `window`: what ran out, which says for how long (and its group's accounts cool too)."""

    def status(self) -> list[dict]:
        """One JSON-safe row per account: never a token or key."""

    def reload(self) -> None:
        """Read the account registry again (after a login)."""

    def flush(self) -> None:
        """Write batched state (request counts) now."""

    def close(self) -> None:
        """Release files and connections."""
