"""DashScope's error answers (Qwen's compatible mode and the portal), mapped to the gateway's error kinds:
what the retry policy does next (refresh, rotate, wait, give up) and what the client sees.

Decisions go by code (DashScope's error-code page; qwen-protocol.md §4); codeless answers seen in the wild
go by their text. A quota or rate answer also says what ran out (a `Window`): Model Studio's "Error messages"
and "Rate limits" pages name pay-as-you-go's per-minute requests (RPM), tokens (TPM) and burst protection, the
Coding Plan FAQ its 5-hour, weekly and monthly quotas, its concurrency and short-term usage limits. The
Coding Plan's answers carry `insufficient_quota`, the code of a TPM limit: their text decides.
"""

from __future__ import annotations

import json

from ... import sse
from ...accounts import Window
from ...errors import (AUTH, CLIENT, CONTEXT, DENIED, NO_RETRY, PLAN_REFUSED, QUOTA, SERVER, STALE, THROTTLE, TIMEOUT,
                       UpstreamError)


def _parse_error(body: bytes | str | None) -> tuple[str, str | None, str | None, str | None]:
    """(message, code, type, param) out of whatever error body Qwen/DashScope sent — the inner error's of one
    wrapped in Qwen's SSE shape (`event:error` / `data: {…}`), as the body or as its message."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    text = (body or "").strip()
    try:
        data = json.loads(text) if text else None
    except ValueError:
        inner = unwrapped(text)
        return (text[:500], None, None, None) if inner is None else _parse_error(json.dumps({"error": inner}))
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("error_description") or data.get("message") or ""
            code = err.get("code") if isinstance(err.get("code"), str) else data.get("code")
            if isinstance(msg, str) and (inner := unwrapped(msg)) is not None:  # its words are the inner error's
                err, msg = {**err, **inner}, inner["message"]
                code = inner["code"] if isinstance(inner.get("code"), str) else code
            return str(msg), code if isinstance(code, str) else None, _str(err.get("type")), _str(err.get("param"))
        if isinstance(err, str):
            return _str(data.get("message")) or err, _str(data.get("code")) or err, None, None
    return text[:500], None, None, None


def unwrapped(text: str) -> dict | None:
    """The inner error of text in Qwen's wrapped shape (dashscope-rules.md, "Learned since 2026-11-26"): an SSE
    `event:error` whose data is a second `data: {…}` line, or a `data: {"error": …}` line; None when it is not one
    (the text is then the message, as it came)."""
    head, _, rest = text.strip().partition("\n")
    data = rest if head.startswith("event:") else text.strip()
    if not data.startswith("data:"):
        return None
    obj = sse.event_json(data[5:], "error")
    inner = obj.get("error") if isinstance(obj, dict) else None
    return inner if isinstance(inner, dict) and isinstance(inner.get("message"), str) and inner["message"] else None


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


# Qwen/DashScope error codes (DashScope's error-code page; qwen-protocol.md §4). Decisions go by code:
# messages are free text ("Requests rate limit exceeded" carries code Throttling.RateQuota and is a
# per-minute limit, not a quota).
_AUTH_CODES = {"invalid_api_key", "InvalidApiKey", "invalid_access_token", "AccessTokenExpired"}
_QUOTA_CODES = {"insufficient_quota", "Throttling.AllocationQuota", "AllocationQuota.FreeTierOnly"}
_THROTTLE_CODES = {"Throttling", "Throttling.RateQuota", "Throttling.BurstRate", "Throttling.User",
                   "rate_limit_exceeded", "limit_requests", "RequestThrottled"}
_DENIED_CODES = {"AccessDenied", "AccessDenied.Unpurchased", "Model.AccessDenied", "Workspace.AccessDenied",
                 "Arrearage", "permission_denied"}
# Of those, the ones that refuse the model, not the account: `param` "model" (another account may serve it)
_MODEL_DENIED_CODES = {"AccessDenied.Unpurchased", "Model.AccessDenied"}
# Billing, answered 429 but not a rate: no wait helps (the workspace's bill, the model's purchase)
_BILLING_CODES = {"PrepaidBillOverdue", "PostpaidBillOverdue", "CommodityNotPurchased"}
# What ran out, by DashScope's words (the first that matches: a Coding Plan window before the TPM text it contains)
_WINDOW_TEXTS = (
    ("hour allocated quota exceeded", Window.FIVE_HOURS),
    ("week allocated quota exceeded", Window.WEEK),
    ("month allocated quota exceeded", Window.MONTH),
    ("usage allocated quota exceeded", Window.USAGE),
    ("concurrency allocated quota exceeded", Window.CONCURRENCY),
    ("free allocated quota exceeded", Window.DAY),
    ("request rate increased too quickly", Window.BURST),
    ("requests rate limit exceeded", Window.RPM),
    ("exceeded your request limit", Window.RPM),
    ("exceeded your current request", Window.RPM),  # "…current request limit", "…current requests list"
    ("allocated quota exceeded", Window.TPM),
    ("exceeded your current quota", Window.TPM),
)
_WINDOW_CODES = {"Throttling.RateQuota": Window.RPM, "LimitRequests": Window.RPM, "limit_requests": Window.RPM,
                 "Throttling.BurstRate": Window.BURST, "limit_burst_rate": Window.BURST,
                 "Throttling.AllocationQuota": Window.TPM}
_QUOTA_WINDOWS = (Window.FIVE_HOURS, Window.WEEK, Window.MONTH, Window.USAGE, Window.DAY)
# Codeless answers seen in the wild (the portal's quota text, the context-length 400, the OAuth 401).
_QUOTA_TEXTS = ("free allocated quota exceeded", "exceeded your current quota")
_CONTEXT_TEXTS = ("range of input length should be", "maximum context length", "context_length_exceeded",
                  "prompt too long", "too many tokens")
_AUTH_TEXTS = ("invalid access token", "token expired", "invalid api key")
_THROTTLE_TEXTS = ("throttl", "rate limit", "too many requests", "tpm", "rpm")
# The Coding Plan's refusal of a client it does not count as a coding agent (405; how it tells agents apart is
# not documented). Any 405 is the plan's: the gateway only POSTs where a POST is served.
PLAN_REFUSED_TEXT = "only available for coding agents"
PLAN_REFUSED_MESSAGE = (
    "Qwen's Coding Plan serves coding agents only (Claude Code, Qwen Code, …), and this client is not one. Use a "
    "pay-as-you-go (Model Studio) key for scripts and other tools: qwen-auth add-key NAME --preset dashscope-intl "
    "--key-env VAR.")
DENIED_MESSAGE = ("Qwen denied access: the model may not be enabled for this account, or the account is in "
                  "arrears (refreshing the login does not help).")


def _throttle(message: str, code: str | None, retry_after: float | None, window: Window | None = None) -> UpstreamError:
    h = {"retry-after": str(int(retry_after))} if retry_after is not None else {}
    return UpstreamError(THROTTLE, 429, message or "Rate limit exceeded.", "tokens" if window is Window.TPM else
                         "requests", "rate_limit_exceeded", retry_after=retry_after, headers=h, window=window)


def _window(low: str, code: str | None) -> Window | None:
    """What ran out, by the answer's text, else its code."""
    return next((w for text, w in _WINDOW_TEXTS if text in low), None) or _WINDOW_CODES.get(code or "")


def _limit(message: str, code: str | None, window: Window, retry_after: float | None) -> UpstreamError:
    """A quota window (the account rotates out until it ends) or a throttle (seconds)."""
    if window in _QUOTA_WINDOWS:  # not a short throttle: no Retry-After "until tomorrow"
        return UpstreamError(QUOTA, 429, message or "Quota exceeded.", "insufficient_quota", "insufficient_quota",
                             retry_after=retry_after, window=window)
    return _throttle(message, code, retry_after, window)


def classify(status: int, body: bytes | str | None, headers: dict[str, str] | None = None) -> UpstreamError:
    """Map one Qwen error answer to what the gateway does and what the client sees."""
    message, code, etype, param = _parse_error(body)
    low = message.lower()
    retry_after = _retry_after(headers)
    if status == 405 or PLAN_REFUSED_TEXT in low:
        return UpstreamError(PLAN_REFUSED, 403, f"{PLAN_REFUSED_MESSAGE} Qwen said: “{message or 'HTTP 405'}”",
                             "invalid_request_error", "plan_refused", headers=dict(NO_RETRY))
    if code in _BILLING_CODES:
        return UpstreamError(DENIED, 403, f"{DENIED_MESSAGE} Qwen said: {message or code}", "invalid_request_error",
                             "permission_denied", headers=dict(NO_RETRY))
    window = _window(low, code) if status in (403, 429) else None
    if window is not None:
        return _limit(message, code, window, retry_after)
    if code in _QUOTA_CODES and status != 400 or status in (403, 429) and code is None and any(
            t in low for t in _QUOTA_TEXTS):
        # A daily/plan quota is not a short throttle: no Retry-After "until tomorrow".
        return UpstreamError(QUOTA, 429, message or "Quota exceeded.", "insufficient_quota", "insufficient_quota")
    if code in _THROTTLE_CODES or status == 429:
        return _throttle(message, code, retry_after)
    if status == 401 or code in _AUTH_CODES or status == 403 and code is None and any(t in low for t in _AUTH_TEXTS):
        return UpstreamError(AUTH, 401, message or "Upstream rejected the credential.", "invalid_request_error",
                             code or "invalid_api_key")
    if status == 403 or code in _DENIED_CODES:
        # R7: model not enabled, account in arrears. Not a credential problem: no refresh, no retry.
        return UpstreamError(DENIED, 403, f"{DENIED_MESSAGE} Qwen said: {message or 'Access denied.'}",
                             "invalid_request_error", "permission_denied",
                             param="model" if code in _MODEL_DENIED_CODES else None, headers=dict(NO_RETRY))
    if status == 400 and "not found previous_response_id" in low:  # Qwen's Responses API no longer holds it
        return UpstreamError(STALE, 400, f"Qwen no longer holds the conversation ({message})",
                             "invalid_request_error", "previous_response_not_found")
    if status in (400, 413) and any(t in low for t in _CONTEXT_TEXTS):
        return UpstreamError(CONTEXT, 400, message, "invalid_request_error", "context_length_exceeded",
                             param="messages")
    if status == 504 or status >= 500 and "stream timeout" in low:
        return UpstreamError(TIMEOUT, 504, f"Qwen timed out ({message or 'gateway timeout'}). Long prompts "
                             "(above ~130k tokens) often do; try a shorter context.", "server_error",
                             "upstream_timeout")
    if status in (503, 529):  # overloaded (529: an Anthropic-compatible base's word): Anthropic's clients read 529
        return UpstreamError(SERVER, 503, message or f"Qwen answered HTTP {status}: overloaded.", "server_error",
                             code or "upstream_overloaded", overloaded=True)
    if status >= 500:
        return UpstreamError(SERVER, 502 if status not in (500, 502) else status,
                             message or f"Qwen answered HTTP {status}.", "server_error", code or "upstream_error")
    if status == 404:
        return UpstreamError(CLIENT, 404, message or "Not found upstream.", "invalid_request_error", code, param)
    return UpstreamError(CLIENT, status if 400 <= status < 500 else 502, message or f"Qwen answered HTTP {status}.",
                         etype or "invalid_request_error", code, param)


def classify_stream_error(err: object) -> UpstreamError:
    """An error that arrives inside a 200 stream: a `data: {"error": …}` event (a dict, in any of the SSE shapes
    Qwen wraps it in: sse.event_json) or the text of a `finish_reason: "error_finish"` chunk (a string, R6: e.g.
    TPM throttling). A dict keeps its class: read as the HTTP answer its code and type say Qwen would have given
    (a refusal of the request stays a 4xx, never a 5xx a client retries). Text has no code, so a throttling phrase
    is the only sign of a per-minute limit."""
    said = err.get("message") if isinstance(err, dict) else err
    if isinstance(said, str) and (inner := unwrapped(said)) is not None:
        err = inner  # wrapped in Qwen's SSE shape: the inner error's words and class
    if isinstance(err, dict):
        message = str(err.get("message") or "Qwen reported an error mid-stream.")
        code = err.get("code") if isinstance(err.get("code"), str) else None
        body = json.dumps({"error": {**err, "message": message}})
        return classify(_stream_status(err, code, message.lower()), body)
    message = str(err or "").strip() or "Qwen ended the answer with an error."
    window = _window(message.lower(), None)
    if window is not None:
        return _limit(message, None, window, None)
    if any(t in message.lower() for t in _THROTTLE_TEXTS):
        return _throttle(message, None, None)
    return UpstreamError(SERVER, 502, message, "server_error", "upstream_error")


# A stream error's type (OpenAI's, as compatible mode names it) when its code says nothing the tables know
_CLIENT_TYPES = {"invalid_request_error", "InvalidParameter", "invalid_parameter_error"}


def _stream_status(err: dict, code: str | None, low: str) -> int:
    """The HTTP status Qwen would have answered an error it put inside a stream with: its code's, else its type's."""
    etype = err.get("type") if isinstance(err.get("type"), str) else None
    status = err.get("status_code", err.get("status"))
    if isinstance(status, int) and 400 <= status < 600:
        return status
    if code is not None and code.isdigit() and 400 <= int(code) < 600:
        return int(code)
    if _window(low, code) is not None or code in _THROTTLE_CODES or code in _QUOTA_CODES \
            or etype in ("throttling", "insufficient_quota", "limit_requests", "limit_burst_rate"):
        return 429
    if code in _AUTH_CODES:
        return 401
    if code in _DENIED_CODES or code in _BILLING_CODES:
        return 403
    if code in _CLIENT_TYPES or etype in _CLIENT_TYPES or (code or "").startswith(("InvalidParameter", "invalid_")):
        return 400
    if "stream timeout" in low:
        return 504
    return 502
