"""One client request's journey through the gateway: the one typed record every step and observer reads.

The gateway builds an `Exchange` once per claimed flow (the request classified and its body parsed
once), fills it in as the request goes upstream and the answer comes back, and hands it to the
observers at named points. `to_meta()` is its JSON-safe copy in `flow.metadata["qwen"]` (saved by
`-w`, filterable with `~meta qwen`): never a token or key. Its keys:

    client          {"method", "url", "key"?}: what the client sent (the key only as a hint)
    key             the name of the named client key (qwen-keys) the request came with
    cost            {"amount", "unit"}: what the request cost (unit USD, or a plan's requests or tokens)
    cache_saved_usd what Qwen's caches took off the prompt's price (USD; negative: writes cost more)
    route           what the gateway made of it: an endpoint name, or "models", "health", "metrics",
                    "auth", "stored_response", "unknown"
    endpoint        "chat.completions" | "responses" | "completions" | "embeddings" (forwarded exchanges)
    model / upstream_model / account / accounts_tried / retries / retry_reasons / stream / notes
    started_at      epoch seconds; duration_ms: from request to the end of the answer
    ttfb_ms         time to the first byte sent to the client
    usage           OpenAI chat usage when Qwen reported it
    status          the HTTP status the client got
    stream_error    the message that ended a stream early
    error           {"status", "code", "message"} when the gateway answered with an error
    prompt_tokens_est / token_method   the gateway's own prompt estimate
    upstream        {"url", "headers", "body"?}: what was sent to Qwen, credential redacted
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import ids
from .jsonio import valid_text
from .pivot import TRANSLATED, Endpoint, Leg

if TYPE_CHECKING:
    import asyncio

    from .accounts import Conversation, Credential
    from .pivot import Upstream
    from .streaming import StreamRewriter

REDACTED = "<redacted>"


class RetryReason(enum.StrEnum):
    """Why the gateway sent a request to Qwen again (metrics count these)."""

    REFRESHED = "refreshed"  # 401: the login was refreshed
    ROTATED = "rotated"  # quota exhausted: another account
    THROTTLED = "throttled"  # rate limited: waited, same or another account
    RECONNECTED = "reconnected"  # a pooled connection had died before the request got through
    THINKING = "thinking"  # the model refused its thinking settings: learned, sent again
    STREAM_ONLY = "stream_only"  # the model answers streams only: learned, sent again as a stream
    CAPPED = "capped"  # the model refused the output cap: its cap learned, sent again within it
    NEW_CHAT = "new_chat"  # a pinned Qwen Chat chat refused the turn (stale parent): sent again in a new chat
    TRUNCATED = "truncated"  # over Qwen's context with Responses `truncation: "auto"`: the oldest items dropped


@dataclass(frozen=True)
class Retry:
    reason: RetryReason
    account: str  # the account whose answer caused the retry
    wait_s: float = 0.0


@dataclass(frozen=True)
class ErrorInfo:
    status: int
    code: str | None
    message: str


@dataclass(slots=True)  # not frozen: its __init__ would set each field through object.__setattr__ (5x the cost)
class ClientRequest:
    """The client's request as it arrived, read once (and never changed: `sized` makes a new one)."""

    method: str
    path: str  # without the query
    url: str
    key_hint: str | None = None  # prefix and length, never the key
    size: int = 0  # body bytes (decoded)
    api_headers: tuple[tuple[str, str], ...] = ()  # anthropic-version, anthropic-beta: what a pass-through forwards
    user_agent: str = ""  # its User-Agent header, as sent ("": none): a key account's upstream identity

    def sized(self, size: int) -> ClientRequest:
        """The same request with its body's size (dataclasses.replace, without its walk over the fields)."""
        return ClientRequest(self.method, self.path, self.url, self.key_hint, size, self.api_headers, self.user_agent)


@dataclass(slots=True)
class Exchange:
    client: ClientRequest
    route: str = "unknown"
    endpoint: Endpoint[Exchange] | None = None  # the client dialect's endpoint (forwarded routes)
    dialect: str = "openai"  # whose format the client reads answers and errors in (door/routing.dialect)
    body: dict | None = None  # the client's JSON body, parsed once
    requested_model: str = ""
    stream: bool = False
    started: float = field(default_factory=time.monotonic)
    started_at: float = field(default_factory=time.time)
    id: str = field(default_factory=ids.exchange_id)  # sorts by time (the ledger's index)
    created: int = field(default_factory=lambda: int(time.time()))
    # upstream
    chat_body: dict = field(default_factory=dict)  # the request in OpenAI chat-completions form
    conversation: Conversation | None = None  # which conversation it continues (the endpoint's to_chat says)
    upstream_body: dict | None = None
    upstream_url: str = ""
    upstream_headers: dict[str, str] = field(default_factory=dict)  # as sent, credential redacted
    upstream_model: str = ""
    cred: Credential | None = field(default=None, repr=False)
    upstream: Upstream | None = field(default=None, repr=False)  # the upstream kind serving `cred`
    leg: Leg = TRANSLATED  # how this (endpoint, upstream) pair is carried
    tried: list[str] = field(default_factory=list)  # accounts, in order
    retries: list[Retry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # answer
    status: int | None = None
    usage: dict | None = None
    error: ErrorInfo | None = None
    stream_error: str | None = None
    rewriter: StreamRewriter | None = None
    first_byte_at: float | None = None
    ended: float | None = None
    upstream_status: int | None = None
    upstream_response_headers: dict[str, str] = field(default_factory=dict)
    upstream_response_body: bytes | None = None  # buffered answers, for the debug log
    # observers' typed fields
    prompt_tokens_est: int | None = None
    token_method: str | None = None
    estimate: asyncio.Future | None = field(default=None, repr=False)  # a prompt count still running
    extra: dict[str, Any] = field(default_factory=dict)  # the endpoint's own state (e.g. the response id)
    # the turn's own state (turn/): how the answer reaches the client and what is kept of it
    translated: bool = False  # translated and checked (a background run's copy goes on from there)
    relay_token: str | None = None  # a stream pointed at the relay: the token that has it served, once
    relayed: bool = False  # its answer comes through the relay (mitmproxy streams it)
    keep_before_end: bool = False  # the endpoint keeps the answer before a stream's end goes out (set by it)
    gate: asyncio.Future | None = field(default=None, repr=False)  # that stream's end, opened once it is kept
    write: Any = field(default=None, repr=False)  # the endpoint's write (a future), awaited before the end
    kept: bool = False  # the endpoint kept the answer already (a parked stream's end)
    served: bool = False  # the pool was told how the account did (Settlement.served), once
    unkept: bool = False  # its write failed: the answer was not kept (nor may it be continued)
    # the door's state: the URL the client addressed (door/claim.py), a named client key's (door/team.py)
    called: tuple[str, str, int] | None = None  # scheme, host, port
    key_record: Any = field(default=None, repr=False)  # its record, while the request may be limited
    key_digest: bytes | None = field(default=None, repr=False)  # checked once the shared keys are read
    key_taken: Any = field(default=None, repr=False)  # what its rate limits took, given back at the end
    limit_headers: dict[str, str] | None = None  # its limits' state, on the answer (x-ratelimit-*)
    # the team gateway (door/team.py, prices.py)
    key_name: str = ""  # the named client key the request came with (never the key itself)
    cost: float | None = None  # what the answer cost, in `cost_unit`
    cost_unit: str = ""  # "USD", or a plan's own "requests" / "tokens"
    cache_saved: float | None = None  # USD Qwen's caches took off the prompt's price (prices.PriceTable.saved)

    @property
    def account(self) -> str:
        return self.cred.account if self.cred else ""

    @property
    def forwarded(self) -> bool:
        return self.endpoint is not None and self.upstream_body is not None

    @property
    def duration_ms(self) -> float:
        end = self.ended if self.ended is not None else time.monotonic()
        return round((end - self.started) * 1000, 1)

    @property
    def ttfb_ms(self) -> float | None:
        return round((self.first_byte_at - self.started) * 1000, 1) if self.first_byte_at is not None else None

    def fail(self, status: int, code: str | None, message: str) -> None:
        self.status = status
        self.error = ErrorInfo(status, code, message)

    def to_meta(self) -> dict:
        """The JSON-safe record for flow.metadata["qwen"]."""
        # mitmproxy reads a URL's bytes that are not UTF-8 as lone surrogates, which no flow file can hold
        client: dict[str, Any] = {"method": self.client.method, "url": valid_text(self.client.url)}
        if self.client.key_hint:
            client["key"] = self.client.key_hint
        out: dict[str, Any] = {
            "client": client,
            "route": self.route,
            "started_at": self.started_at,
            "duration_ms": self.duration_ms,
            "model": self.requested_model,
            "stream": self.stream,
            "notes": list(self.notes),
        }
        if self.endpoint is not None:
            out.update(endpoint=self.endpoint.name, upstream_model=self.upstream_model, account=self.account,
                       accounts_tried=list(self.tried), retries=len(self.retries),
                       retry_reasons=[r.reason.value for r in self.retries])
        if self.upstream_url:
            out["upstream"] = {"url": self.upstream_url, "headers": dict(self.upstream_headers)}
        if self.status is not None:
            out["status"] = self.status
        if self.usage:
            out["usage"] = self.usage
        if self.ttfb_ms is not None:
            out["ttfb_ms"] = self.ttfb_ms
        if self.stream_error:
            out["stream_error"] = self.stream_error
        if self.error is not None:
            out["error"] = {"status": self.error.status, "code": self.error.code,
                            "message": valid_text(self.error.message)}
        if self.prompt_tokens_est is not None:
            out["prompt_tokens_est"] = self.prompt_tokens_est
            out["token_method"] = self.token_method
        if self.key_name:
            out["key"] = self.key_name
        if self.cost is not None:
            out["cost"] = {"amount": self.cost, "unit": self.cost_unit}
        if self.cache_saved:
            out["cache_saved_usd"] = self.cache_saved
        return out


def note(notes: list[str] | None, text: str) -> None:
    """Add a note to an exchange's notes, once: a retried request runs the same translation again."""
    if notes is not None and text not in notes:
        notes.append(text)


def key_hint(key: str) -> str | None:
    """A client key as a hint: its first three characters and its length. None for a key of 8 characters or
    fewer: a placeholder (`x`, `anything`) whose length says nothing and whose first three characters would
    give most of it away."""
    if len(key) <= 8:
        return None
    return f"{key[:3]}… ({len(key)} chars)"
