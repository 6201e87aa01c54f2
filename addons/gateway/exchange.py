"""One client request's journey through the gateway: the one typed record every step and observer reads.

The gateway builds an `Exchange` once per claimed flow (the request classified and its body parsed once), fills
it in as the request goes upstream and the answer comes back, and hands it to the observers at named points.
`to_meta()` is its JSON-safe copy in `flow.metadata["qwen"]` (`-w`, `~meta qwen`): never a token or key. Its keys:

    client          {"method", "url", "key"?}: what the client sent (the key only as a hint)
    key             the name of the named client key (qwen-keys) the request came with
    cost            {"amount", "unit", "priced_as"?, "priced_by"?}: what it cost (USD, a plan's requests or tokens;
                    "unpriced": no amount), priced as (qwen_unpriced_as), by (the account's list from Qwen, its tier)
    cache_saved_usd what Qwen's caches took off the prompt's price (USD; negative: writes cost more)
    route           an endpoint name, or "models", "health", "metrics", "auth", "stored_response", "unknown"
    endpoint        "chat.completions" | "responses" | "completions" | "embeddings" (forwarded exchanges)
    model / upstream_model / account / accounts_tried / retries / retry_reasons / stream / notes
    fallback        {"model", "refused"}: the model of its group (qwen_fallbacks) that answered, the models refused
    started_at      epoch seconds; duration_ms, ttfb_ms: from request to the answer's end, to its first byte
    usage           OpenAI chat usage when Qwen reported it
    status          the HTTP status the client got; stream_error: the message that ended a stream early; cuts: how
                    often Qwen's stream broke before its end (each continued, or the last ended in stream_error)
    error           {"status", "code", "message"} when the gateway answered with an error
    prompt_tokens_est / token_method   the gateway's own prompt estimate
    upstream        {"url", "headers", "body"?}: what was sent to Qwen, credential redacted
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import ids
from .jsonio import valid_text
from .interfaces import Endpoint
from .providers import TRANSLATED, Leg, Upstream
from .retry_reasons import Refusal, Retry, RetryReason  # noqa: F401  (re-exported: the record's retries)

if TYPE_CHECKING:
    import asyncio

    from .accounts import Conversation, Credential
    from .cache_turn import Asked, CacheTurn
    from .live_stream import LiveStream
    from .models.routes import Routed


@dataclass(frozen=True)
class ErrorInfo:
    status: int
    code: str | None
    message: str


@dataclass(slots=True)  # not frozen: its __init__ would set each field through object.__setattr__ (5x the cost)
class ClientRequest:
    """The client's request as it arrived, read once, never changed (`sized` makes a new one); by ingress/claim.py."""

    method: str
    path: str  # without the query
    url: str
    key_hint: str | None = None  # prefix and length, never the key
    size: int = 0  # body bytes (decoded)
    api_headers: tuple[tuple[str, str], ...] = ()  # anthropic-version, anthropic-beta: what a pass-through forwards
    user_agent: str = ""  # its User-Agent header, as sent ("": none): a key account's upstream identity
    called: tuple[str, str, int] | None = None  # scheme, host, port the client addressed (ingress/claim.as_called)

    def sized(self, size: int) -> ClientRequest:
        """The same request with its body's size (dataclasses.replace, without its walk over the fields)."""
        return ClientRequest(self.method, self.path, self.url, self.key_hint, size, self.api_headers, self.user_agent,
                             self.called)


@dataclass(slots=True)
class Attempt:
    """The upstream side, the latest attempt's: its account, what went to Qwen, the accounts `tried`, the `retries`."""

    cred: Credential | None = field(default=None, repr=False)
    upstream: Upstream | None = field(default=None, repr=False)  # the upstream kind serving `cred`
    leg: Leg = TRANSLATED  # how this (endpoint, upstream) pair is carried
    model: str = ""  # the model asked of Qwen
    route: str = ""  # why a route (qwen_routes) moved the model on this attempt: long-context, images, fast
    body: dict | None = None
    sent: bytes = field(default=b"", repr=False)  # `body` as encoded on the wire (cache/prints_sent.py reads it)
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # as sent, credential redacted
    status: int | None = None  # Qwen's answer: its status, headers, and a buffered body (the debug log)
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes | None = None
    tried: list[str] = field(default_factory=list)  # accounts, in order
    retries: list[Retry] = field(default_factory=list)
    counted: tuple[int, int] | None = None  # (prompt tokens, window) as the server counted, when its refusal said
    fallback: str = ""  # the model of a fallback group (qwen_fallbacks) sent instead of the refused ones
    refusals: list[Refusal] = field(default_factory=list, repr=False)  # the models refused before `fallback`

    @property
    def account(self) -> str:
        return self.cred.account if self.cred else ""

    @property
    def tried_for_model(self) -> list[str]:
        """The accounts tried for the model sent now (a fallback group's next model starts afresh)."""
        return self.tried[self.refusals[-1].tried:] if self.refusals else self.tried

    def answered(self, body: bytes) -> None:
        """Qwen's whole answer as the turn read it (turn/ may not call upstream/): the debug log shows it."""
        self.response_body = body


@dataclass(slots=True)
class Result:
    """What the client got, and what it cost. Written by the turn and its settlement (turn/; the facts others
    learn are told to turn/outcome.py) and the entrance check's refusals (`Exchange.fail`)."""

    status: int | None = None
    usage: dict | None = None
    error: ErrorInfo | None = None
    stream_error: str | None = None
    stream_error_code: str | None = None  # the code of the error event a stream ended with, when it had one
    cuts: int = 0  # times Qwen's stream broke before its end (turn/stream_rewriter.py): continued, or ended in error
    first_byte_at: float | None = None
    ended: float | None = None
    cost: float | None = None  # what the answer cost, in `cost_unit`
    cost_unit: str = ""  # "USD", or a plan's own "requests" / "tokens"; "unpriced": no price (cost None)
    priced_as: str = ""  # the model whose price counted it (qwen_unpriced_as), when it has none of its own
    priced_by: str = ""  # the account's own list from Qwen and its tier, when it priced the answer ("": the table)
    cache_saved: float | None = None  # USD Qwen's caches took off the prompt's price (prices.PriceTable.saved)
    cache: CacheTurn | None = None  # the cache doctor's verdict on the turn (observe/cache_doctor.py)


@dataclass(slots=True)
class TurnState:
    """How the answer reaches the client and what is kept of it. Written by the turn alone (others: turn/outcome.py)."""

    translated: bool = False  # translated and checked (a background run's copy goes on from there)
    rewriter: LiveStream | None = None  # turn/stream_rewriter.StreamRewriter, typed from below
    relay_token: str | None = None  # a stream pointed at the relay: the token that has it served, once (Relay.expect)
    keep_before_end: bool = False  # the endpoint keeps the answer before a stream's end goes out (set by it)
    gate: asyncio.Future | None = field(default=None, repr=False)  # that stream's end, opened once it is kept
    write: Any = field(default=None, repr=False)  # the endpoint's write (a future), awaited before the end
    kept: bool = False  # the endpoint kept the answer already (a parked stream's end)
    served: bool = False  # the pool was told how the account did (Settlement.served), once
    unkept: bool = False  # its write failed: the answer was not kept (nor may it be continued)
    handed_on: bool = False  # a background run took the request on: its end is told once, by the run's exchange
    before_end: list[Any] = field(default_factory=list)  # written before a stream's end goes out (outcome.before_end)


@dataclass(slots=True)
class KeyUse:
    """The named client key the request came with (qwen-keys). Written by the key check (tenancy/team.py)."""

    name: str = ""  # its name (never the key itself)
    record: Any = field(default=None, repr=False)  # its record, while the request may be limited
    digest: bytes | None = field(default=None, repr=False)  # checked once the shared keys are read
    taken: Any = field(default=None, repr=False)  # what its rate limits took, given back at the end
    hold: Any = field(default=None, repr=False)  # what it holds against its key's budgets, released at the end
    limit_headers: dict[str, str] | None = None  # its limits' state, on the answer (x-ratelimit-*)
    usd_budget: bool = False  # it has a monthly USD budget: nothing unpriced may go upstream (the engine asks)


@dataclass(slots=True)
class PromptCount:
    """The gateway's own count of the prompt: observe/estimator.py, turn/context_guard.py, turn/context_overflow.py."""

    tokens: int | None = None
    method: str | None = None  # tokens.py's method: tiktoken:…, estimate, sampled:…, skipped
    task: asyncio.Future | None = field(default=None, repr=False)  # a count still running


@dataclass(slots=True)
class Exchange:
    """One exchange in parts, each written by the room that owns it: what the client asked (`client`, the
    body), the endpoint's translation (`chat_body`, `conversation`, `endpoint_state`: the endpoint's own,
    typed by it and read by nothing else), the upstream `attempt`, the `turn`'s state, the `result`, the
    named `key`, the prompt's `count`."""

    client: ClientRequest
    route: str = "unknown"
    endpoint: Endpoint[Exchange] | None = None  # the client dialect's endpoint (forwarded routes)
    dialect: str = "openai"  # whose format the client reads answers and errors in (ingress/routing.dialect)
    body: dict | None = None  # the client's JSON body, parsed once
    requested_model: str = ""
    stream: bool = False
    started: float = field(default_factory=time.monotonic)
    started_at: float = field(default_factory=time.time)
    id: str = field(default_factory=ids.exchange_id)  # sorts by time (the ledger's index)
    created: int = field(default_factory=lambda: int(time.time()))
    chat_body: dict = field(default_factory=dict)  # the request in OpenAI chat-completions form
    conversation: Conversation | None = None  # which conversation it continues (the endpoint's to_chat says)
    routed: Routed | None = None  # the route (qwen_routes) the request met (turn/model_route.py)
    truncate_oldest: bool = False  # the client lets the oldest messages go to fit the context (to_chat says)
    cache_ask: Asked | None = None  # the cache diagnostics its client asked for (to_chat says; cache/diagnosis.py)
    cache_print: asyncio.Future | None = field(default=None, repr=False)  # a long prompt print in the making (cache/)
    endpoint_state: Any = None  # the endpoint's own (Responses: api/responses/state.py), never read by the core
    notes: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)  # what qwen_cache_fixes changed in the request (turn/cache_fixes.py)
    attempt: Attempt = field(default_factory=Attempt)
    turn: TurnState = field(default_factory=TurnState)
    result: Result = field(default_factory=Result)
    key: KeyUse = field(default_factory=KeyUse)
    count: PromptCount = field(default_factory=PromptCount)

    def fork(self, **asked: Any) -> Exchange:
        """A new exchange for another attempt at the same request (a background run, one batch of many): what the
        client asked, its translation and key kept (`asked` changes any of them), a new id and clock, and no
        attempt, turn, result or notes of its own yet."""
        values = {name: getattr(self, name) for name in ("client", "route", "endpoint", "dialect", "body",
                                                          "requested_model", "stream", "chat_body", "conversation",
                                                          "truncate_oldest", "endpoint_state")}
        values.update(key=dataclasses.replace(self.key), count=dataclasses.replace(self.count), **asked)
        return Exchange(**values)

    def join(self, forks: list[Exchange]) -> None:
        """The forks' attempts as its own (a request sent in parts): the first's, every account tried, every retry."""
        self.attempt = dataclasses.replace(forks[0].attempt, retries=[r for f in forks for r in f.attempt.retries],
                                           tried=list(dict.fromkeys(a for f in forks for a in f.attempt.tried)))

    @property
    def account(self) -> str:
        return self.attempt.account

    @property
    def answered_as(self) -> str:
        """The model an answer names: the one a fallback group sent (the client asked another), else the client's."""
        return self.attempt.fallback or self.requested_model or self.attempt.model

    @property
    def forwarded(self) -> bool:
        return self.endpoint is not None and self.attempt.body is not None

    @property
    def duration_ms(self) -> float:
        end = self.result.ended if self.result.ended is not None else time.monotonic()
        return round((end - self.started) * 1000, 1)

    @property
    def ttfb_ms(self) -> float | None:
        first = self.result.first_byte_at
        return round((first - self.started) * 1000, 1) if first is not None else None

    def fail(self, status: int, code: str | None, message: str) -> None:
        self.result.status, self.result.error = status, ErrorInfo(status, code, message)

    def to_meta(self) -> dict:
        """The JSON-safe record for flow.metadata["qwen"]."""
        # mitmproxy reads a URL's bytes that are not UTF-8 as lone surrogates, which no flow file can hold
        client: dict[str, Any] = {"method": self.client.method, "url": valid_text(self.client.url)}
        if self.client.key_hint:
            client["key"] = self.client.key_hint
        out: dict[str, Any] = {"client": client, "route": self.route, "started_at": self.started_at,
                               "duration_ms": self.duration_ms, "model": self.requested_model, "stream": self.stream,
                               "notes": list(self.notes)}
        if self.endpoint is not None:
            out.update(endpoint=self.endpoint.name, upstream_model=self.attempt.model, account=self.account,
                       accounts_tried=list(self.attempt.tried), retries=len(self.attempt.retries),
                       retry_reasons=[r.reason.value for r in self.attempt.retries])
        if self.attempt.route:
            out["routed"] = {"reason": self.attempt.route, "model": self.attempt.model,
                             "rule": self.routed.rule if self.routed is not None else ""}
        if self.attempt.fallback:
            out["fallback"] = {"model": self.attempt.fallback, "refused": [r.model for r in self.attempt.refusals]}
        if self.attempt.url:
            out["upstream"] = {"url": self.attempt.url, "headers": dict(self.attempt.headers)}
        if self.result.status is not None:
            out["status"] = self.result.status
        if self.result.usage:
            out["usage"] = self.result.usage
        if (ttfb := self.ttfb_ms) is not None:
            out["ttfb_ms"] = ttfb
        if self.result.stream_error:
            out["stream_error"] = self.result.stream_error
        if self.result.cuts:
            out["cuts"] = self.result.cuts
        if self.result.error is not None:
            out["error"] = {"status": self.result.error.status, "code": self.result.error.code,
                            "message": valid_text(self.result.error.message)}
        if self.count.tokens is not None:
            out["prompt_tokens_est"] = self.count.tokens
            out["token_method"] = self.count.method
        if self.key.name:
            out["key"] = self.key.name
        if self.result.cost_unit:  # an amount, or "unpriced" without one
            out["cost"] = {"amount": self.result.cost, "unit": self.result.cost_unit,
                           **{k: v for k in ("priced_as", "priced_by") if (v := getattr(self.result, k))}}
        if self.result.cache_saved:
            out["cache_saved_usd"] = self.result.cache_saved
        return out


def note(notes: list[str] | None, text: str) -> None:
    """Add a note to an exchange's notes, once: a retried request runs the same translation again."""
    if notes is not None and text not in notes:
        notes.append(text)

