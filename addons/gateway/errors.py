"""The gateway's errors: OpenAI-format errors it answers itself, the kinds of upstream failure the retry
policy acts on, and the transport failures of an upstream connection. How one upstream's error answers
map to these kinds is that upstream's own business (upstream/dashscope/errors.py).

OpenAI SDKs pick their exception class from the HTTP status (400 BadRequestError,
401 AuthenticationError, 403 PermissionDeniedError, 404 NotFoundError, 409, 422,
429 RateLimitError, >=500 InternalServerError), so the status matters as much as the body. The `type` is
OpenAI's own word: `invalid_request_error` for every 4xx but a rate limit (a wrong key's 401 and a model's 403
alike, as api.openai.com types them), `requests` / `tokens` / `insufficient_quota` for a 429, `server_error`
for a 5xx. Anthropic's words are api/messages/errors.py's.
"""

from __future__ import annotations

import enum
import json
import time
from dataclasses import dataclass, field

from .accounts import AccountUnavailable, Window
from .storage.health import StateUnavailable

STATE_RETRY_AFTER_S = 2  # what a 503 state_unavailable asks a client to wait (storage.PROBE_S is 0.5 s)

# flow.metadata key: mitmproxy refused the request itself before any hook could answer (its request validation:
# a CONNECT on a reverse listener), with the status it sent (400); set by the entrance, read by the request line
MITMPROXY_REFUSED = "qwen_mitmproxy_refused"

# An answer no retry of the client's can change (a missing or wrong key, no account, a spent budget, a plan's
# refusal): the openai and anthropic SDKs and Claude Code honour it and say so at once, where they would
# otherwise retry in silence for minutes.
NO_RETRY = {"x-should-retry": "false"}

_DEFAULT_TYPES = {
    429: "requests",  # OpenAI types a rate limit by what ran out (requests, tokens)
}


# The `type`s OpenAI's API puts in its errors (a rate limit is typed by what ran out: requests or tokens).
OPENAI_ERROR_TYPES = frozenset({"invalid_request_error", "server_error", "insufficient_quota", "requests", "tokens"})


def openai_type(kind: object, default: str = "server_error") -> str:
    """`kind` when it is one of OpenAI's error types, else `default` (Qwen's own: `InternalError.Algo`, …)."""
    return kind if isinstance(kind, str) and kind in OPENAI_ERROR_TYPES else default


def error_body(message: str, type: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class GatewayError(Exception):
    """An error the gateway answers itself, in OpenAI's format."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        overloaded: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or _DEFAULT_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self.code = code
        self.param = param
        self.headers = dict(headers or {})
        self.overloaded = overloaded  # Qwen (or an Anthropic base) said it is overloaded: Anthropic's 529

    def body(self) -> dict:
        return error_body(self.message, self.type, self.code, self.param)

    def to_bytes(self) -> bytes:
        return json.dumps(self.body()).encode()


class Ended(GatewayError):
    """Why the gateway ended a running turn (turn/stopping.py): it stops, or the turn's key was revoked."""


def failure(e: Exception) -> GatewayError:
    """The client's error for anything that ended a turn or a claimed flow before its answer: a refusal as it is,
    the storage away as 503 (gateway_error), anything else — the gateway's own fault — a 500 (the caller logs it).
    The one place "The gateway failed" is written."""
    if isinstance(e, (GatewayError, StateUnavailable)):
        return gateway_error(e)
    return GatewayError(500, f"The gateway failed: {type(e).__name__}.")


def gateway_error(e: GatewayError | StateUnavailable) -> GatewayError:
    """The one answer to the gateway's state storage being away (the shared database, the state folder):
    503 `state_unavailable`, the storage named, a Retry-After. A GatewayError stays as it is."""
    if isinstance(e, GatewayError):
        return e
    return GatewayError(503, e.message, code="state_unavailable", headers={"retry-after": str(STATE_RETRY_AFTER_S)})


class ErrorKind(enum.StrEnum):
    """What went wrong upstream decides what the gateway does next (values are the pool's outcomes where
    they overlap: auth, quota, throttle)."""

    AUTH = "auth"  # token rejected: refresh once and retry
    QUOTA = "quota"  # daily/plan quota: rotate to another account at once
    THROTTLE = "throttle"  # per-minute limit: back off (Retry-After) and retry
    DENIED = "denied"  # 403 access denied: model not enabled, account in arrears; a refresh cannot help
    CONTEXT = "context"  # prompt too long: not retryable
    TIMEOUT = "timeout"  # 504 stream timeout: not retryable (long contexts)
    SERVER = "server"  # other 5xx
    CLIENT = "client"  # other 4xx: the request itself is bad
    PUNISHED = "punished"  # an anti-bot page (Qwen Chat web accounts): the session is parked, never retried
    STALE = "stale"  # the upstream's own state moved on (a pinned Qwen Chat chat): tried once more, afresh
    UNLISTED = "unlisted"  # the account's own model list leaves the model out: another account, nothing sent
    PLAN_REFUSED = "plan_refused"  # the account's plan does not serve this client (the Coding Plan: coding agents
    # only): another account takes it; the account itself is fine for the clients its plan serves
    UNREACHABLE = "unreachable"  # nothing was sent: the server could not be reached, or says its engine is down (a
    # self-hosted server's 503): another account takes it when one can


AUTH, QUOTA, THROTTLE, DENIED = ErrorKind.AUTH, ErrorKind.QUOTA, ErrorKind.THROTTLE, ErrorKind.DENIED
CONTEXT, TIMEOUT, SERVER, CLIENT = ErrorKind.CONTEXT, ErrorKind.TIMEOUT, ErrorKind.SERVER, ErrorKind.CLIENT
PUNISHED, STALE, PLAN_REFUSED = ErrorKind.PUNISHED, ErrorKind.STALE, ErrorKind.PLAN_REFUSED
UNLISTED, UNREACHABLE = ErrorKind.UNLISTED, ErrorKind.UNREACHABLE


@dataclass
class UpstreamError:
    kind: ErrorKind
    status: int  # the status the client gets
    message: str
    type: str
    code: str | None = None
    param: str | None = None
    retry_after: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    window: Window | None = None  # what ran out (a QUOTA's or THROTTLE's): how long the account stays away
    overloaded: bool = False  # the upstream is overloaded (a 503, an Anthropic base's 529)
    # (the prompt's tokens, the window) as the upstream counted this request, when its refusal says them (a
    # self-hosted server's: the prompt and the answer share its window)
    counted: tuple[int, int] | None = None
    transport: GatewayError | None = None  # an UNREACHABLE's: the client's error when no other account takes it

    def to_gateway_error(self) -> GatewayError:
        if self.transport is not None:
            return self.transport
        return GatewayError(self.status, self.message, type=self.type, code=self.code, param=self.param,
                            headers=self.headers, overloaded=self.overloaded)


class ConnectionFailed(Exception):
    """The upstream could not be reached or broke the protocol (the transport, not an answer)."""


class DeadConnection(ConnectionFailed):
    """A reused keep-alive connection turned out to be closed before any answer: safe to retry once."""


class UpstreamTimeout(ConnectionFailed):
    """The upstream sent nothing within the time allowed (the head, or the next bytes of a body)."""


class Unreachable(ConnectionFailed):
    """No connection could be made (refused, no route, none within the connect timeout): nothing was sent."""


class NoConnection(UpstreamTimeout, Unreachable):
    """No connection within the connect timeout."""


def unavailable(e: AccountUnavailable) -> GatewayError:
    """No account can take the request now (`accounts.AccountUnavailable`), as the client's error."""
    retry_at = getattr(e, "retry_at", None)
    if getattr(e, "needs_login", False):
        return GatewayError(401, str(e), code="qwen_login_required", headers=NO_RETRY)
    if retry_at is not None:
        wait = max(1, int(retry_at - time.time()))
        if getattr(e, "throttled", False):  # a rate limit: the SDKs retry this one after Retry-After
            return GatewayError(429, str(e), type="requests", code="rate_limit_exceeded",
                                headers={"retry-after": str(wait)})
        # A quota is back at its reset, hours away: no Retry-After (a client would sleep that long), and
        # OpenAI's SDKs told not to retry it (x-should-retry), as they treat OpenAI's own quota answer;
        # Claude Code honours it too, and prints the message as it is.
        return GatewayError(429, f"Qwen quota exceeded. {e}", type="insufficient_quota", code="insufficient_quota",
                            headers=NO_RETRY)
    # No wait helps (no account configured, every one needs a login or a key): the SDKs are told not to retry,
    # unless a refresh failed for a network or server reason, which a later request may find over
    return GatewayError(503, str(e), code="no_usable_account",
                        headers=None if getattr(e, "transient", False) else NO_RETRY)
