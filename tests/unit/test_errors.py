"""Qwen's error answers classified by their codes (errors.classify), and errors inside a 200 stream."""

from __future__ import annotations

import json

import pytest

from qwen_gateway.accounts import Window
from qwen_gateway.errors import ErrorKind
from qwen_gateway.upstream.dashscope.errors import classify, classify_stream_error


def body(code, message, type="invalid_request_error") -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "param": None, "type": type}}).encode()


@pytest.mark.parametrize("status,payload,kind,client_status,code", [
    (429, body("Throttling.RateQuota", "Requests rate limit exceeded, please try again later.", "throttling"),
     ErrorKind.THROTTLE, 429, "rate_limit_exceeded"),
    (429, body("Throttling", "Requests throttling triggered.", "throttling"), ErrorKind.THROTTLE, 429,
     "rate_limit_exceeded"),
    (429, body("Throttling.AllocationQuota", "Allocated quota exceeded, please increase your quota limit."),
     ErrorKind.THROTTLE, 429, "rate_limit_exceeded"),  # Model Studio: tokens per minute, not a quota
    (429, body("insufficient_quota", "Free allocated quota exceeded.", "insufficient_quota"), ErrorKind.QUOTA, 429,
     "insufficient_quota"),
    (403, body("insufficient_quota", "Free allocated quota exceeded.", "insufficient_quota"), ErrorKind.QUOTA, 429,
     "insufficient_quota"),
    (429, b'{"error": {"message": "Free allocated quota exceeded."}}', ErrorKind.QUOTA, 429, "insufficient_quota"),
    (400, body("invalid_parameter_error", "Custom quota exceeded in your prompt text"), ErrorKind.CLIENT, 400,
     "invalid_parameter_error"),
    (403, body("AccessDenied.Unpurchased", "Access to model denied. Please make sure you are eligible for using "
               "the model."), ErrorKind.DENIED, 403, "permission_denied"),
    (403, body("Arrearage", "Access denied, please make sure your account is in good standing."), ErrorKind.DENIED,
     403, "permission_denied"),
    (400, body("Arrearage", "Access denied, please make sure your account is in good standing."), ErrorKind.DENIED,
     403, "permission_denied"),
    (403, b"Forbidden", ErrorKind.DENIED, 403, "permission_denied"),
    (401, body("invalid_api_key", "invalid access token or token expired"), ErrorKind.AUTH, 401, "invalid_api_key"),
    (403, b'{"error": {"message": "invalid access token or token expired"}}', ErrorKind.AUTH, 401, "invalid_api_key"),
    (400, body("invalid_parameter_error", "Range of input length should be [1, 983616]"), ErrorKind.CONTEXT, 400,
     "context_length_exceeded"),
    (504, b"stream timeout", ErrorKind.TIMEOUT, 504, "upstream_timeout"),
    (503, body("ServiceUnavailable", "Service unavailable", "server_error"), ErrorKind.SERVER, 503,
     "ServiceUnavailable"),
])
def test_classify_by_code(status, payload, kind, client_status, code):
    err = classify(status, payload)
    assert (err.kind, err.status, err.code) == (kind, client_status, code)


# What ran out, as DashScope words it (Model Studio's "Error messages" page and "Rate limits" FAQ, the Coding Plan
# FAQ; the bodies of limit_requests, limit_burst_rate and Arrearage as users captured them)
TPM_TEXT = ("You exceeded your current quota, please check your plan and billing details. For details, see: "
            "https://help.aliyun.com/zh/model-studio/error-code#token-limit")
RPM_BODY = (b'{"error":{"message":"You have exceeded your current request limit. For details, see: https://help.aliyun'
            b'.com/zh/model-studio/error-code#rate-limit","type":"limit_requests","code":"limit_requests"}}')
BURST_BODY = (b'{"error":{"message":"Request rate increased too quickly. To ensure system stability, please adjust your '
              b'client logic to scale requests more smoothly over time.","type":"limit_burst_rate","param":"",'
              b'"code":"limit_burst_rate"}}')


@pytest.mark.parametrize("status,payload,kind,window,client_type", [
    (429, body("insufficient_quota", "hour allocated quota exceeded", "insufficient_quota"), ErrorKind.QUOTA,
     Window.FIVE_HOURS, "insufficient_quota"),
    (429, body("insufficient_quota", "week allocated quota exceeded", "insufficient_quota"), ErrorKind.QUOTA,
     Window.WEEK, "insufficient_quota"),
    (429, body("insufficient_quota", "month allocated quota exceeded", "insufficient_quota"), ErrorKind.QUOTA,
     Window.MONTH, "insufficient_quota"),
    (429, body("insufficient_quota", "usage allocated quota exceeded. please try again later.", "insufficient_quota"),
     ErrorKind.QUOTA, Window.USAGE, "insufficient_quota"),
    (429, body("insufficient_quota", "concurrency allocated quota exceeded. please try again later."),
     ErrorKind.THROTTLE, Window.CONCURRENCY, "requests"),
    (429, body("insufficient_quota", TPM_TEXT, "insufficient_quota"), ErrorKind.THROTTLE, Window.TPM, "tokens"),
    (429, body("Throttling.AllocationQuota", "Allocated quota exceeded, please increase your quota limit."),
     ErrorKind.THROTTLE, Window.TPM, "tokens"),
    (429, RPM_BODY, ErrorKind.THROTTLE, Window.RPM, "requests"),
    (429, body("Throttling.RateQuota", "Requests rate limit exceeded, please try again later."), ErrorKind.THROTTLE,
     Window.RPM, "requests"),
    (429, body("LimitRequests", "You exceeded your current requests list."), ErrorKind.THROTTLE, Window.RPM,
     "requests"),
    (429, BURST_BODY, ErrorKind.THROTTLE, Window.BURST, "requests"),
    (429, body("Throttling.BurstRate", "Request rate increased too quickly."), ErrorKind.THROTTLE, Window.BURST,
     "requests"),
    (429, body("insufficient_quota", "Free allocated quota exceeded.", "insufficient_quota"), ErrorKind.QUOTA,
     Window.DAY, "insufficient_quota"),
    (429, body("Throttling", "Requests throttling triggered."), ErrorKind.THROTTLE, None, "requests"),
])
def test_what_ran_out(status, payload, kind, window, client_type):
    err = classify(status, payload)
    assert (err.kind, err.window, err.type, err.status) == (kind, window, client_type, 429)


@pytest.mark.parametrize("code,message", [("PrepaidBillOverdue", "The prepaid bill is overdue."),
                                          ("PostpaidBillOverdue", "The postpaid bill is overdue."),
                                          ("CommodityNotPurchased", "Commodity has not purchased yet.")])
def test_billing_answered_429_is_not_a_throttle(code, message):
    err = classify(429, body(code, message))
    assert err.kind is ErrorKind.DENIED and message in err.message


def test_denied_says_why_and_is_not_a_credential_problem():
    err = classify(403, body("Model.AccessDenied", "Model access denied."))
    assert err.kind is ErrorKind.DENIED and err.type == "invalid_request_error"  # OpenAI's word for its 403s
    assert err.headers == {"x-should-retry": "false"}  # no retry gets the model enabled
    assert "not be enabled" in err.message and "arrears" in err.message and "Model access denied." in err.message
    assert err.to_gateway_error().status == 403


def test_kinds_are_the_pools_outcome_strings():
    assert ErrorKind.THROTTLE == "throttle" and ErrorKind.QUOTA == "quota" and ErrorKind.AUTH == "auth"


def test_retry_after_kept_for_throttling_only():
    err = classify(429, body("Throttling", "x"), {"Retry-After": "7"})
    assert err.retry_after == 7 and err.headers == {"retry-after": "7"}
    assert classify(429, body("insufficient_quota", "x"), {"Retry-After": "7"}).headers == {}


def test_stream_errors():
    assert classify_stream_error("Requests rate limit exceeded, please try again later.").kind is ErrorKind.THROTTLE
    assert classify_stream_error("Throttling: TPM limit").kind is ErrorKind.THROTTLE
    assert classify_stream_error("model crashed").kind is ErrorKind.SERVER
    assert classify_stream_error("").message
    assert classify_stream_error({"message": "stream timeout", "code": "504"}).kind is ErrorKind.TIMEOUT
    assert classify_stream_error({"message": "x", "code": "Throttling.RateQuota"}).kind is ErrorKind.THROTTLE
    assert classify_stream_error("Requests rate limit exceeded, please try again later.").window is Window.RPM
    assert classify_stream_error({"message": "hour allocated quota exceeded", "code": "insufficient_quota"}).window \
        is Window.FIVE_HOURS


WRAPPED_INNER = {"error": {"code": "invalid_parameter_error", "param": None, "type": "invalid_request_error",
                           "message": "'reasoning_effort' and 'thinking_budget' cannot be set simultaneously"},
                 "id": "chatcmpl-1"}


@pytest.mark.parametrize("wrapped", [
    "event:error\ndata:data: " + json.dumps(WRAPPED_INNER),  # the SSE shape, as an HTTP error's body
    "data: " + json.dumps(WRAPPED_INNER),
    json.dumps({"error": {"message": "data: " + json.dumps(WRAPPED_INNER), "type": "invalid_request_error"}}),
    json.dumps({"code": "InvalidParameter", "message": "data: " + json.dumps(WRAPPED_INNER)}),
])
def test_a_nested_error_says_the_inner_errors_words_and_keeps_its_class(wrapped):
    """Issue 79, item 5: the client reads the inner error's message, never the raw `data: {…}` text."""
    err = classify(400, wrapped)
    assert err.status == 400 and err.message == WRAPPED_INNER["error"]["message"], err.message
    assert err.type == "invalid_request_error"


def test_a_nested_error_inside_a_stream_says_the_inner_errors_words():
    for wrapped in ("data: " + json.dumps(WRAPPED_INNER), {"message": "data: " + json.dumps(WRAPPED_INNER)}):
        err = classify_stream_error(wrapped)
        assert err.message == WRAPPED_INNER["error"]["message"] and err.status == 400, (err.message, err.status)
    assert classify_stream_error("data: not json").message == "data: not json"  # not a wrapped error: as it came
