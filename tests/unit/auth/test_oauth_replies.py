"""What an OAuth server's reply may leak: token-shaped values redacted, before any cut."""

from __future__ import annotations

import json

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from qwen_gateway.auth.oauth_replies import REDACTED, redact


TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.mark.parametrize("text,kept,gone", [
    ('{"error":"invalid_request","error_description":"Invalid refresh token or client_id"}',
     ["Invalid refresh token or client_id", "invalid_request"], []),
    ('{"error":"server_error","access_token":"x1","refresh_token":"short"}', ["server_error"], ['"x1"', "short"]),
    ("grant_type=refresh_token&refresh_token=abc123&client_id=f0", ["grant_type=refresh_token"], ["abc123"]),
    ("upstream said: Authorization: Bearer eyJhbGciOi.J9eyJzdWIi.OiIxMjM0 rejected", ["rejected"], ["eyJhbGciOi"]),
    ("request a1b2c3d4e5f6a7b8c9d0 failed", ["request", "failed"], ["a1b2c3d4e5f6a7b8c9d0"]),
    ('{"error":"x","detail":"new access token: QWxhZGRpbjpvcGVuIHNlc2FtZQ2025ab"', ["detail"], ["QWxhZGRpbjpv"]),
    ('{"msg": "cut {"access_token": "tok-abcdefghijklmnop', ["msg"], ["tok-abcdefghijklmnop"]),
])
def test_redact(text, kept, gone):
    out = redact(text)
    assert REDACTED in out or not gone
    assert all(k in out for k in kept), out
    assert not any(g in out for g in gone), out


def test_redact_before_cutting():
    token = "Zx9" + "k" * 37  # token-shaped by length
    text = "x " * 145 + token + " tail" * 20
    assert "Zx9k" in text[:300] and "Zx9k" in redact(text[:300], limit=None)  # cut first: half a token leaks
    out = redact(text, limit=300)
    assert "Zx9k" not in out and REDACTED in out and out.endswith("…") and len(out) <= 301


@given(st.text(alphabet=TOKEN_ALPHABET, min_size=8, max_size=80))
def test_token_values_never_survive(tok):
    assume(tok not in 'error server_error access_token refresh_token grant_type=refresh_token&client_id=x '
                      'Authorization: Bearer anything at all here {"": ", ":"}')
    for text in (json.dumps({"error": "server_error", "access_token": tok}),
                 json.dumps({"refresh_token": tok})[:-2],  # cut short
                 f"grant_type=refresh_token&refresh_token={tok}&client_id=x",
                 f"Authorization: Bearer {tok}"):
        assert tok not in redact(text, limit=None)
    assert tok not in redact(f"anything at all {tok} here", secrets=[tok], limit=None)
