"""A named key's rate limits in the headers the real APIs use (tenancy/rate_headers.py)."""

from __future__ import annotations

import calendar

import pytest

from qwen_gateway.tenancy import rate_headers
from qwen_gateway.tenancy.rate_headers import duration, headers, rfc3339


@pytest.mark.parametrize("seconds,text", [
    (0, "0s"), (-1, "0s"), (0.25, "250ms"), (0.0001, "1ms"), (1, "1s"), (58.2, "59s"), (60, "1m0s"), (361, "6m1s")])
def test_durations_are_written_as_openai_writes_them(seconds, text):
    assert duration(seconds) == text


def test_rfc3339_rounds_up_to_the_next_whole_second():
    assert rfc3339(1.5, now=1_700_000_000.0) == "2023-11-14T22:13:22Z"
    assert rfc3339(-5, now=1_700_000_000.0) == "2023-11-14T22:13:20Z"  # never in the past


def test_openais_headers():
    assert headers("openai", [("requests", 60, 59, 1.0), ("tokens", 1000, 0, 30.5)]) == {
        "x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "31s"}


def test_anthropics_headers_show_the_one_token_budget_in_each_family():
    out = headers("anthropic", [("requests", 5, 4, 2.0), ("tokens", 100, 40, 0)], now=1_700_000_000.0)
    assert out["anthropic-ratelimit-requests-limit"] == "5" and out["anthropic-ratelimit-requests-remaining"] == "4"
    assert out["anthropic-ratelimit-requests-reset"] == "2023-11-14T22:13:22Z"
    for family in ("tokens", "input-tokens", "output-tokens"):
        assert (out[f"anthropic-ratelimit-{family}-limit"], out[f"anthropic-ratelimit-{family}-remaining"]) == \
            ("100", "40")
    assert len(out) == 12


def test_a_key_without_limits_gets_no_headers():
    assert headers("openai", []) == {} and headers("anthropic", []) == {}


def test_rate_limit_headers_as_each_api_writes_them():
    assert [rate_headers.duration(s) for s in (0, 0.25, 1, 59.2, 60, 62, 360)] == \
        ["0s", "250ms", "1s", "1m0s", "1m0s", "1m2s", "6m0s"]
    now = calendar.timegm((2026, 5, 31, 12, 0, 0))
    states = [("requests", 5, 4, 60.0), ("tokens", 1000, 900, 0.5)]
    assert rate_headers.headers("openai", states, now) == {
        "x-ratelimit-limit-requests": "5", "x-ratelimit-remaining-requests": "4", "x-ratelimit-reset-requests": "1m0s",
        "x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "900", "x-ratelimit-reset-tokens": "500ms"}
    assert rate_headers.headers("anthropic", states, now) == {
        "anthropic-ratelimit-requests-limit": "5", "anthropic-ratelimit-requests-remaining": "4",
        "anthropic-ratelimit-requests-reset": "2026-05-31T12:01:00Z", "anthropic-ratelimit-tokens-limit": "1000",
        "anthropic-ratelimit-tokens-remaining": "900", "anthropic-ratelimit-tokens-reset": "2026-05-31T12:00:01Z",
        # the key's one budget counts input and output tokens together: Anthropic's input and output headers say so
        "anthropic-ratelimit-input-tokens-limit": "1000", "anthropic-ratelimit-input-tokens-remaining": "900",
        "anthropic-ratelimit-input-tokens-reset": "2026-05-31T12:00:01Z",
        "anthropic-ratelimit-output-tokens-limit": "1000", "anthropic-ratelimit-output-tokens-remaining": "900",
        "anthropic-ratelimit-output-tokens-reset": "2026-05-31T12:00:01Z"}
