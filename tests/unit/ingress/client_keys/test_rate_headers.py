"""A named key's rate limits in the headers the real APIs use (ingress/client_keys/rate_headers.py)."""

from __future__ import annotations

import pytest

from qwen_gateway.ingress.client_keys.rate_headers import duration, headers, rfc3339


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
