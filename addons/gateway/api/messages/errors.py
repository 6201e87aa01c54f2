"""Errors as Anthropic's clients read them: `{"type": "error", "error": {"type", "message"}, "request_id"}`,
with the status the SDKs map to their exception classes (400 BadRequestError, 401 AuthenticationError, 403
PermissionDeniedError, 404 NotFoundError, 413, 429 RateLimitError, 500 InternalServerError, 504
GatewayTimeoutError, 529 OverloadedError) and the type Anthropic's API gives each (its "Errors" page):
`timeout_error` for a 504, `overloaded_error` for an overloaded upstream (Qwen's 503, an Anthropic base's 529),
answered 529 as Anthropic answers it. Claude Code retries 429, 5xx and 529 (529 three times only) and shows 400
and 429 messages verbatim.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ...errors import GatewayError
from ...turn.context_overflow import ContextOverflow
from ...interfaces import ClientFormat

if TYPE_CHECKING:
    from ...exchange import Exchange

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large", 415: "invalid_request_error",
          426: "invalid_request_error", 429: "rate_limit_error", 499: "api_error", 504: "timeout_error",
          529: "overloaded_error"}
OVERLOADED = 529


def error_type(status: int) -> str:
    return _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def status(e: GatewayError) -> int:
    """The status Anthropic answers: 529 for an overloaded upstream, else the error's."""
    return OVERLOADED if e.overloaded else e.status


def request_id(exchange_id: str) -> str:
    return "req_" + exchange_id


def error_body(e: GatewayError, rid: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": error_type(status(e)), "message": message(e)},
                       "request_id": rid}).encode()


def message(e: GatewayError) -> str:
    """The error's words as Anthropic's API has them: a prompt over the limit is `prompt is too long: N tokens
    > M maximum`, the text Claude Code recognises (it then compacts the conversation by the gap)."""
    if isinstance(e, ContextOverflow):
        return f"prompt is too long: {e.tokens} tokens > {e.limit} maximum"
    return e.message


# The codes of an error inside a stream (OpenAI's shape, from the core) that say the upstream timed out or is
# overloaded: Qwen's own "504" and the gateway's
STREAM_TIMEOUT_CODES = frozenset({"504", "upstream_timeout"})
STREAM_OVERLOADED_CODES = frozenset({"upstream_overloaded"})


def stream_error_type(error: dict) -> str:
    """The Anthropic error type of an error that ends a stream (given in OpenAI's shape by the core)."""
    kind, code = error.get("type"), error.get("code")
    if kind in ("rate_limit_error", "requests", "tokens") or code in ("rate_limit_exceeded", "insufficient_quota"):
        return "rate_limit_error"
    if kind == "invalid_request_error":
        return "invalid_request_error"
    if code in STREAM_TIMEOUT_CODES:
        return "timeout_error"
    if code in STREAM_OVERLOADED_CODES:
        return "overloaded_error"  # Claude Code treats it as a 529: three attempts, then its non-stream fallback
    return "api_error"


FORMAT: ClientFormat[Exchange] = ClientFormat(error_body=lambda e, ex: error_body(e, request_id(ex.id)),
                                              headers=lambda ex: {"request-id": request_id(ex.id)}, status=status)
