"""The web API's errors (qwen-web-protocol.md §1.12) mapped to the gateway's error kinds. Most come as HTTP 200:
a JSON envelope `{"success": false, "data": {"code", "details"}}` (the real status in `x-actual-status-code`),
or an anti-bot punish reply (JSON `FAIL_SYS_USER_VALIDATE`, a `_____tmd_____/punish` redirect, an `RGV587`
text, the `aliyun_waf` slider page). A punish is never retried: retrying raises the session's risk score."""

from __future__ import annotations

import json

from ...errors import AUTH, CLIENT, PUNISHED, QUOTA, SERVER, STALE, THROTTLE, UpstreamError

PUNISH_MARKS = ("_____tmd_____/punish", "FAIL_SYS_USER_VALIDATE", "RGV587", "aliyun_waf", "baxia-dialog-content")
PUNISH_MESSAGE = ("Qwen Chat answered with an anti-bot page: this session needs a fresh browser login "
                  "(qwen-auth add-web NAME --replace); the account is parked until then.")
# Codes that mean "wait": the per-day cap has `num` hours (§1.12); the others are short (assumed).
_THROTTLE = {"toomanyrequests", "too_many_requests", "parallellimited"}
# A turn refused for the chat's state (a stale parent_id, a generation still running, §1.8, §1.12): a new chat
# serves it (retry.py tries once more; the pinned chat is forgotten first).
STALE_MARKS = ("parent", "in progress")
_QUOTA = {"quotalimited", "exceedlimit", "quota_exhausted"}


def is_error_answer(status: int, headers: dict[str, str]) -> bool:
    """A completion answers frames (`text/event-stream`); anything else with status 200 is an envelope or a
    punish page."""
    if status >= 400:
        return True
    ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    return "event-stream" not in ctype


def classify(status: int, body: bytes, headers: dict[str, str]) -> UpstreamError:
    text = body.decode("utf-8", "replace")
    if any(mark in text for mark in PUNISH_MARKS):
        return UpstreamError(PUNISHED, 503, PUNISH_MESSAGE, "server_error", code="qwen_web_punished")
    try:
        data = json.loads(text) if text.strip() else None
    except ValueError:
        data = None
    inner = data.get("data") if isinstance(data, dict) else None
    if isinstance(inner, dict) and isinstance(inner.get("code"), str):
        return envelope(inner["code"], str(inner.get("details") or ""), inner.get("num"))
    if isinstance(data, dict) and isinstance(data.get("detail"), str):  # a validation or routing error
        return UpstreamError(SERVER, 502, f"Qwen Chat refused the request: {data['detail']}", "server_error",
                             code="upstream_bad_request")
    if status == 401:
        return envelope("Unauthorized", "401 Unauthorized", None)
    if status == 429:
        return envelope("Too_Many_Requests", "Too many requests", None)
    kind = SERVER
    return UpstreamError(kind, 502, f"Qwen Chat answered HTTP {status} with {_ctype(headers)} instead of a stream.",
                         "server_error", code="invalid_upstream_response")


def envelope(code: str, details: str, num: object) -> UpstreamError:
    low = code.lower()
    said = f"Qwen Chat: {details}" if details else f"Qwen Chat: {code}"
    if low == "unauthorized":
        return UpstreamError(AUTH, 401, f"{said} (the web session's token was refused; when a refresh cannot renew "
                                        "it, import a fresh browser session: qwen-auth add-web NAME --replace).",
                             "invalid_request_error", code="invalid_api_key")
    if low == "ratelimited":
        hours = num if isinstance(num, (int, float)) and not isinstance(num, bool) and num > 0 else 24
        wait = int(hours * 3600)
        return UpstreamError(QUOTA, 429, f"{said} Try again in {hours:g} h.", "insufficient_quota",
                             code="rate_limit_exceeded", retry_after=float(wait),
                             headers={"retry-after": str(wait)})
    if low in _THROTTLE:
        return UpstreamError(THROTTLE, 429, said, "requests", code="rate_limit_exceeded")
    if low in _QUOTA:
        return UpstreamError(QUOTA, 429, said, "insufficient_quota", code="insufficient_quota")
    if low == "not_found":
        return UpstreamError(CLIENT, 404, said, "invalid_request_error", code="model_not_found"
                             if "model" in details.lower() else "not_found")
    if low == "bad_request" and any(w in details.lower() for w in STALE_MARKS):
        return UpstreamError(STALE, 502, f"{said} (the pinned chat moved on)", "server_error", code="upstream_bad_request")
    if low == "bad_request":
        return UpstreamError(SERVER, 502, f"{said} (Qwen Chat refused the gateway's request).", "server_error",
                             code="upstream_bad_request")
    return UpstreamError(SERVER, 502, said, "server_error", code="upstream_error")


def stream_fault(error: object) -> UpstreamError:
    """An error frame inside the stream: `{"error": "Internal error!"}` or `{"error": {"code", "details"}}`."""
    if isinstance(error, dict):
        code, details = str(error.get("code") or "upstream_error"), str(error.get("details") or error.get("message")
                                                                            or "")
        return UpstreamError(SERVER, 502, f"Qwen Chat: {details or code}", "server_error", code=code)
    return UpstreamError(SERVER, 502, f"Qwen Chat: {error}", "server_error", code="upstream_error")


def _ctype(headers: dict[str, str]) -> str:
    return next((v for k, v in headers.items() if k.lower() == "content-type"), "no content type") or "nothing"
