"""Qwen's error answers classified by their codes (errors.classify), and errors inside a 200 stream."""

from __future__ import annotations

import json

import pytest

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
     ErrorKind.QUOTA, 429, "insufficient_quota"),
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


def test_denied_says_why_and_is_not_a_credential_problem():
    err = classify(403, body("Model.AccessDenied", "Model access denied."))
    assert err.kind is ErrorKind.DENIED and err.type == "permission_error"
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
