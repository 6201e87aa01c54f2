"""Qwen's error bodies (qwen-protocol.md §4, verbatim) and the faults tests can queue."""

from __future__ import annotations

import json
import uuid


def dumps(obj) -> bytes:
    """Compact JSON, as Qwen/DashScope write it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def take(queue: list[dict], matches) -> dict | None:
    """The first queued fault `matches` accepts, counted down (and removed at its last use); a copy."""
    for f in queue:
        if matches(f):
            f["count"] -= 1
            if f["count"] <= 0:
                queue.remove(f)
            return dict(f)
    return None


def _error(code: str, message: str, type: str) -> dict:
    return {"error": {"code": code, "message": message, "param": None, "type": type}}


def auth_401() -> dict:
    return {**_error("invalid_api_key", "invalid access token or token expired", "invalid_request_error"),
            "request_id": str(uuid.uuid4())}


QUOTA = _error("insufficient_quota", "Free allocated quota exceeded.", "insufficient_quota")
QUOTA_BILLING = _error("insufficient_quota", "You exceeded your current quota, please check your plan and billing "
                       "details. For details, see: https://help.aliyun.com/zh/model-studio/error-code#token-limit",
                       "insufficient_quota")
THROTTLE = _error("Throttling", "Requests throttling triggered.", "throttling")
CONTEXT = _error("invalid_parameter_error", "Range of input length should be [1, 983616]", "invalid_request_error")
THROTTLE_RATE = _error("Throttling.RateQuota", "Requests rate limit exceeded, please try again later.", "throttling")
# R7: 403 is also "not allowed", not only "bad key": the account is in arrears, or the model is not enabled.
ARREARS = _error("Arrearage", "Access denied, please make sure your account is in good standing.",
                 "invalid_request_error")
DENIED = _error("AccessDenied.Unpurchased", "Access to model denied. Please make sure you are eligible for using "
                "the model.", "invalid_request_error")
# What ran out, as Model Studio words it (its "Error messages" page, "Rate limits" FAQ and Coding Plan FAQ; bodies
# as users captured them: limit_requests, limit_burst_rate and Arrearage byte for byte, a Coding Plan window as
# coding.dashscope.aliyuncs.com answered "month allocated quota exceeded" with code insufficient_quota)
HOUR = _error("insufficient_quota", "hour allocated quota exceeded", "insufficient_quota")
WEEK = _error("insufficient_quota", "week allocated quota exceeded", "insufficient_quota")
MONTH = _error("insufficient_quota", "month allocated quota exceeded", "insufficient_quota")
USAGE = _error("insufficient_quota", "usage allocated quota exceeded. please try again later.", "insufficient_quota")
CONCURRENCY = _error("insufficient_quota", "concurrency allocated quota exceeded. please try again later.",
                     "insufficient_quota")
TPM = QUOTA_BILLING  # Model Studio: "Allocated quota exceeded" / "You exceeded your current quota" is tokens per minute
RPM = {"error": {"message": "You have exceeded your current request limit. For details, see: https://help.aliyun.com"
                 "/zh/model-studio/error-code#rate-limit", "type": "limit_requests", "code": "limit_requests"}}
BURST = {"error": {"message": "Request rate increased too quickly. To ensure system stability, please adjust your "
                   "client logic to scale requests more smoothly over time.", "type": "limit_burst_rate", "param": "",
                   "code": "limit_burst_rate"}}


def arrears_400() -> dict:
    return {"error": {"message": "Access denied, please make sure your account is in good standing. For details, see: "
                      "https://help.aliyun.com/zh/model-studio/error-code#overdue-payment", "type": "Arrearage",
                      "param": None, "code": "Arrearage"}, "request_id": str(uuid.uuid4())}


# R6: a 200 stream that ends in an error, its text in delta.content (e.g. TPM throttling): qwen-code's pipeline.ts
# retries it as a StreamContentError (dashscope-rules.md); the text is Model Studio's own rate-limit words
# (Throttling.RateQuota). No Model Studio page documents error_finish itself.
ERROR_FINISH_TEXT = "Requests rate limit exceeded, please try again later."
# A refusal in words no public source quotes (assumed): the stand-in for the next wording Qwen writes, which the
# gateway must count and show rather than pass on unseen.
NEW_WORDING = _error("invalid_parameter_error", "<400> InternalError.Algo.InvalidParameter: The frobnicate "
                     "parameter is not supported by this model", "invalid_request_error")
SERVER_500 = _error("InternalError", "Internal server error", "server_error")
SERVER_503 = _error("ServiceUnavailable", "Service unavailable", "server_error")
MIDSTREAM_504 = b'data: {"error":{"message":"stream timeout","type":"server_error","code":"504"}}\n\n'
GARBAGE_SSE = b"data: {this is not json\n\n"


def nested_error(error: dict, cid: str) -> bytes:
    """An error inside a 200 stream as Qwen sent qwen3.8-max's "'reasoning_effort' and 'thinking_budget' cannot be set
    simultaneously" (opencode #41531; dashscope-rules.md, "Learned since 2026-11-26"): an `event:error` whose data is
    a second `data: {…}` line, the error and the completion's id."""
    return b"event:error\ndata:data: " + dumps({"error": error, "id": cid}) + b"\n\n"


def nested_fault_error(queued: dict) -> dict:
    """The error a queued `nested_error` fault sends: its `code`, `message` and `type`, by default the refusal seen."""
    return {"code": queued.get("code", "invalid_parameter_error"), "param": None,
            "message": queued.get("message", "'reasoning_effort' and 'thinking_budget' cannot be set simultaneously"),
            "type": queued.get("type", "invalid_request_error")}


# A refusal Qwen was seen to send in that shape when the request streams (its HTTP status 200)
STREAMED_REFUSALS = ("cannot be set simultaneously",)

# Answered before any work is done.
IMMEDIATE = {
    "quota429": (429, QUOTA),
    "quota429_billing": (429, QUOTA_BILLING),
    "quota403": (403, QUOTA),
    "throttle429": (429, THROTTLE),
    "ratequota429": (429, THROTTLE_RATE),
    "arrears403": (403, ARREARS),
    "denied403": (403, DENIED),
    "context400": (400, CONTEXT),
    "hour_quota429": (429, HOUR),
    "week_quota429": (429, WEEK),
    "month_quota429": (429, MONTH),
    "usage429": (429, USAGE),
    "concurrency429": (429, CONCURRENCY),
    "tpm429": (429, TPM),
    "rpm429": (429, RPM),
    "burst429": (429, BURST),
    "new_wording400": (400, NEW_WORDING),
    "server500": (500, SERVER_500),
    "server503": (503, SERVER_503),
}
# What a limit switch (state.State.count) answers: throttle and quota are rpm_limit's and daily_limit's
LIMITS = {"throttle": THROTTLE, "quota": QUOTA, "5h": HOUR, "week": WEEK, "month": MONTH, "tpm": TPM, "burst": BURST,
          "concurrency": CONCURRENCY}
# Need the socket or the stream: handled by the server.
SPECIAL = ("auth401", "arrears400", "timeout504", "server500_empty", "invalid_json", "reset_before_headers",
           "echo_header400", "no_usage")
# How a `cut` fault ends a stream at its byte (wire.Wire.arm_cut): the connection closed (FIN) before the body's last
# chunk, reset (RST), the chunked body ended as if complete (a proxy that closes cleanly), or silence until the client
# gives up.
CUT_WAYS = ("fin", "rst", "end", "stall")
STREAM = ("midstream504", "reset_midstream", "stall", "invalid_sse", "error_finish", "cut", "nested_error")
API_FAULTS = (*IMMEDIATE, *SPECIAL, *STREAM)
OAUTH_FAULTS = ("oauth500", "oauth503", "oauth_reset", "oauth_slow")
ALL = API_FAULTS + OAUTH_FAULTS


def echo_header(value: str) -> dict:
    """A 400 whose message is a header the request sent, as an upstream that is not Model Studio may answer a value
    it refuses (none is known to): the gateway must learn nothing from words its own request carried (issue 68)."""
    return _error("invalid_parameter_error", value, "invalid_request_error")


def normalise(body: dict) -> dict | str:
    """A fault as queued by POST /_emulator/fault, or an error message."""
    if not isinstance(body, dict) or body.get("kind") not in ALL:
        return f"unknown fault kind {body.get('kind') if isinstance(body, dict) else body!r}; known: {list(ALL)}"
    try:
        count = int(body.get("count", 1))
    except (TypeError, ValueError):
        return "count must be an integer"
    if body["kind"] == "cut":  # wire.Wire.arm_cut: where and how a stream is cut
        if body.get("inside") is not None:
            if not isinstance(body["inside"], str) or not body["inside"] or "at" in body:
                return "a cut's `inside` is the text it falls in the middle of (and no `at`)"
        elif not isinstance(body.get("at"), int) or isinstance(body.get("at"), bool) or body["at"] < 0:
            return "a cut needs `at`, the byte of the stream's body it falls on (0 or more), or `inside`"
        if body.get("how", "fin") not in CUT_WAYS:
            return f"a cut's `how` is one of {list(CUT_WAYS)}"
    return {**body, "count": max(1, count)}

# vLLM and SGLang modes (vllm.py): the engine ends an answer after part of its text with its own finish reason —
# vLLM's FinishReason knows stop, length, abort, error and repetition (vllm/v1/engine/__init__.py); SGLang ends an
# aborted request with "abort". vLLM 2026 answers "error" as a GenerationError (500, or an error inside the stream).
# Queued like the others (POST /_emulator/fault); the DashScope mode takes them and does nothing.
FINISHES = {"finish_abort": "abort", "finish_error": "error", "finish_repetition": "repetition"}
STREAM = (*STREAM, *FINISHES)
API_FAULTS = (*API_FAULTS, *FINISHES)

# A stream's end (server.Handler.stream; docs/emulator.md): part of the text then `[DONE]` with no finish chunk; a
# whole answer (finish, usage, [DONE]) whose body is then kept open, never ended; the finish chunk, then the body
# silent with no usage and no [DONE]. The last two hold the connection for `seconds` (stall_seconds by default),
# or until the client leaves.
STREAM_ENDS = ("done_without_finish", "open_after_done", "stall_before_usage")
STREAM = (*STREAM, *STREAM_ENDS)
API_FAULTS = (*API_FAULTS, *STREAM_ENDS)
ALL = API_FAULTS + OAUTH_FAULTS
