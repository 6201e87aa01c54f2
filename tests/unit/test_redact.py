"""Secrets out of anything the observers write or show (redact.py): headers, URLs, free text, log lines as
mitmproxy's protocol debug prints them."""

from __future__ import annotations

import pytest

from qwen_gateway.redact import REDACTED, redact_headers, redact_log, redact_text, redact_url, safe_message

RAW = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer sk-unique-0123456789\r\n"
       b"Cookie: session=sess-abcdef\r\nx-api-key: ak-zyxwvu\r\nProxy-Authorization: Basic dXNlcjpwdw==\r\n"
       b"api-key: azure-key-1\r\nContent-Length: 2\r\n\r\n{}")
SECRETS = ("sk-unique-0123456789", "sess-abcdef", "ak-zyxwvu", "dXNlcjpwdw==", "azure-key-1")


@pytest.mark.parametrize("text", [
    f"[127.0.0.1:5000]   >> DataReceived(client, {RAW!r})",  # mitmproxy's proxy_debug: the bytes' repr
    RAW.decode(),  # raw text
    "headers=[(b':method', b'POST'), (b'authorization', b'Bearer sk-unique-0123456789'), (b'cookie', "
    "b'session=sess-abcdef'), (b'x-api-key', b'ak-zyxwvu'), (b'proxy-authorization', b'Basic dXNlcjpwdw=='), "
    "(b'api-key', b'azure-key-1')]",  # HTTP/2 header pairs
], ids=["repr", "raw", "h2-pairs"])
def test_secret_headers_are_redacted_in_every_form(text):
    clean = redact_log(text)
    assert not [s for s in SECRETS if s in clean], clean
    assert "Host: 127.0.0.1" in clean or ":method" in clean  # the rest is left as it was
    assert "Content-Length: 2" in clean or ":method" in clean


def test_lines_without_secrets_are_unchanged():
    for line in ("GET /v1/models route=models 200 total=0ms", "no authorization header was sent",
                 "reverse proxy to https://portal.qwen.ai listening at 127.0.0.1:8080.",
                 "401 error=invalid_api_key 'This gateway requires one of its client keys (Authorization: Bearer KEY…'"):
        assert redact_log(line) == line


def test_tokens_keys_and_json_secrets_are_redacted_in_free_text():
    text = ('upstream said 401 for Bearer eyJhbGciOiJIUzI1NiJ9.abc and key sk-abcdef123456 in '
            '{"api_key": "k-1", "password": "p\\"w", "model": "qwen"} via wss openai-insecure-api-key.sk-xyz')
    assert redact_text(text) == (
        'upstream said 401 for Bearer <redacted> and key sk-<redacted> in '
        '{"api_key": "<redacted>", "password": "<redacted>", "model": "qwen"} via wss openai-insecure-api-key.<redacted>')


def test_short_words_after_bearer_or_sk_are_not_secrets():
    assert redact_text("Bearer token missing; sk-123 is too short") == "Bearer token missing; sk-123 is too short"


def test_secret_headers_are_replaced_and_others_scanned():
    assert redact_headers({"Authorization": "Basic abc", "Cookie": "a=b", "X-Trace": "Bearer 0123456789abc",
                           "Content-Type": "application/json"}) == {
        "Authorization": REDACTED, "Cookie": REDACTED, "X-Trace": "Bearer <redacted>",
        "Content-Type": "application/json"}


def test_secret_query_parameters_are_redacted_and_the_rest_kept():
    assert redact_url("https://h/v1/models?key=abc&limit=5&Access_Token=t") == \
        "https://h/v1/models?key=<redacted>&limit=5&Access_Token=<redacted>"
    assert redact_url("https://h/v1/x/sk-abcdefgh") == "https://h/v1/x/sk-<redacted>"  # no query: the text scan
    assert redact_url("http://h/p?q=a%20b") == "http://h/p?q=a+b"


def test_safe_message_redacts_and_cuts_with_an_ellipsis():
    assert safe_message(None, 10) is None and safe_message("", 10) == ""
    assert safe_message("short", 10) == "short"
    assert safe_message("x" * 20, 10) == "x" * 9 + "…"
    # a secret across the cut is still recognised: no half token in the kept part
    assert safe_message("error: Bearer abcdefghijklmnop", 20) == "error: Bearer <reda…"
