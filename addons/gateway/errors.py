"""OpenAI-format errors, and classification of Qwen's error answers.

OpenAI SDKs pick their exception class from the HTTP status (400 BadRequestError,
401 AuthenticationError, 403 PermissionDeniedError, 404 NotFoundError, 409, 422,
429 RateLimitError, >=500 InternalServerError), so the status matters as much as the body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

_DEFAULT_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


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
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or _DEFAULT_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> dict:
        return error_body(self.message, self.type, self.code, self.param)

    def to_bytes(self) -> bytes:
        return json.dumps(self.body()).encode()


# What went wrong upstream decides what the gateway does next.
AUTH = "auth"  # token rejected: refresh once and retry
QUOTA = "quota"  # daily/plan quota: rotate to another account at once
THROTTLE = "throttle"  # per-minute limit: back off (Retry-After) and retry
CONTEXT = "context"  # prompt too long: not retryable
TIMEOUT = "timeout"  # 504 stream timeout: not retryable (long contexts)
SERVER = "server"  # other 5xx
CLIENT = "client"  # other 4xx: the request itself is bad


@dataclass
class UpstreamError:
    kind: str
    status: int  # the status the client gets
    message: str
    type: str
    code: str | None = None
    param: str | None = None
    retry_after: float | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def to_gateway_error(self) -> GatewayError:
        return GatewayError(
            self.status, self.message, type=self.type, code=self.code, param=self.param, headers=self.headers
        )


def _parse_error(body: bytes | str | None) -> tuple[str, str | None, str | None, str | None]:
    """(message, code, type, param) out of whatever error body Qwen/DashScope sent."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    text = (body or "").strip()
    try:
        data = json.loads(text) if text else None
    except ValueError:
        return text[:500], None, None, None
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("error_description") or data.get("message") or ""
            code = err.get("code") if isinstance(err.get("code"), str) else data.get("code")
            return str(msg), code if isinstance(code, str) else None, _str(err.get("type")), _str(err.get("param"))
        if isinstance(err, str):
            return _str(data.get("message")) or err, _str(data.get("code")) or err, None, None
    return text[:500], None, None, None


def _str(v: object) -> str | None:
    return v if isinstance(v, str) else None


def _retry_after(headers: dict[str, str] | None) -> float | None:
    if not headers:
        return None
    for k, v in headers.items():
        if k.lower() == "retry-after":
            try:
                return max(0.0, float(v))
            except ValueError:
                return None
    return None


_AUTH_WORDS = ("unauthorized", "forbidden", "invalid api key", "invalid access token", "token expired",
               "authentication", "access denied")
_CONTEXT_WORDS = ("context_length_exceeded", "maximum context length", "prompt too long",
                  "range of input length should be", "too many tokens", "input length")


def classify(status: int, body: bytes | str | None, headers: dict[str, str] | None = None) -> UpstreamError:
    """Map one Qwen error answer to what the gateway does and what the client sees."""
    message, code, etype, param = _parse_error(body)
    low = f"{message} {code or ''} {etype or ''}".lower()
    retry_after = _retry_after(headers)
    if "insufficient_quota" in low or "free allocated quota exceeded" in low or (
        "quota" in low and "exceeded" in low
    ) or (code or "").startswith("Throttling.AllocationQuota"):
        # A daily/plan quota is not a short throttle: no Retry-After "until tomorrow".
        return UpstreamError(QUOTA, 429, message or "Quota exceeded.", "insufficient_quota", "insufficient_quota")
    if status == 429 or "throttling" in low or "rate limit" in low or "too many requests" in low:
        h = {"retry-after": str(int(retry_after))} if retry_after is not None else {}
        return UpstreamError(THROTTLE, 429, message or "Rate limit exceeded.", "rate_limit_error",
                             code or "rate_limit_exceeded", retry_after=retry_after, headers=h)
    if status in (401, 403) or any(w in low for w in _AUTH_WORDS) or ("token" in low and "expired" in low):
        return UpstreamError(AUTH, 401, message or "Upstream rejected the credential.", "authentication_error",
                             code or "invalid_api_key")
    if any(w in low for w in _CONTEXT_WORDS):
        return UpstreamError(CONTEXT, 400, message, "invalid_request_error", "context_length_exceeded", param="messages")
    if status == 504 or "stream timeout" in low:
        return UpstreamError(TIMEOUT, 504, f"Qwen timed out ({message or 'gateway timeout'}). Long prompts "
                             "(above ~130k tokens) often do; try a shorter context.", "api_error", "upstream_timeout")
    if status >= 500:
        return UpstreamError(SERVER, 502 if status not in (500, 502, 503) else status,
                             message or f"Qwen answered HTTP {status}.", "api_error", code or "upstream_error")
    if status == 404:
        return UpstreamError(CLIENT, 404, message or "Not found upstream.", "not_found_error", code, param)
    return UpstreamError(CLIENT, status if 400 <= status < 500 else 502, message or f"Qwen answered HTTP {status}.",
                         etype or "invalid_request_error", code, param)
