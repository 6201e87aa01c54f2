"""What an observer is (observer.py): the points it may override, and the pure helpers observers share to read
what an exchange was (its endpoint, status, error, and the usage's cache figures)."""

from __future__ import annotations

import pytest

from qwen_gateway.cache_usage import read as read_cache
from qwen_gateway.observer import (POINTS, Observer, cache_write_tokens, cached_tokens,
                                   endpoint_name, error_code, error_text, failed, label, overrides, status_of, usage_int)
from helpers.observe_testlib import exchange, local, refused


def test_only_the_points_a_class_overrides_are_called():
    class Ledgerish(Observer):
        def finished(self, ex, flow) -> None:
            pass

    assert [p for p in POINTS if overrides(Ledgerish(), p)] == ["finished"]
    assert not any(overrides(Observer(), p) for p in POINTS)


def test_the_endpoint_and_label_of_forwarded_refused_and_local_exchanges():
    assert (endpoint_name(exchange()), label(exchange())) == ("chat.completions", "chat.completions")
    turned_away = refused(401, "invalid_api_key", "no", endpoint=None, route="responses")
    assert endpoint_name(turned_away) == "responses"  # refused before it was classified further
    assert (endpoint_name(local("models")), label(local("models"))) == (None, "models")
    nowhere = local("models")
    nowhere.route = ""
    assert label(nowhere) == "unknown"


def test_status_error_and_failure_as_the_client_saw_them():
    ok = exchange()
    assert (status_of(ok), error_code(ok), error_text(ok), failed(ok)) == (200, None, None, False)
    bad = refused(429, "rate_limit_exceeded", "slow down")
    assert (status_of(bad), error_code(bad), error_text(bad), failed(bad)) == (429, "rate_limit_exceeded",
                                                                               "slow down", True)
    only_error = exchange(status=None, error=(503, "no_usable_account", "none"))
    assert status_of(only_error) == 503  # the error's status when the gateway set only that
    broken = exchange(stream=True, stream_error="Qwen ended the stream early")
    assert error_text(broken) == "Qwen ended the stream early" and failed(broken)
    assert failed(exchange(status=None, usage=None))  # no status at all: not a success


@pytest.mark.parametrize("usage,cached,written,kind", [
    ({"prompt_tokens_details": {"cached_tokens": 40}}, 40, None, "implicit"),
    ({"cached_tokens": 7}, 7, None, "implicit"),
    ({"prompt_tokens_details": {"cached_tokens": 0, "cache_creation_input_tokens": 900}}, 0, 900, "explicit"),
    ({"prompt_tokens_details": {"cache_write_tokens": 5, "cached_tokens": 1}}, 1, 5, "explicit"),
    ({"prompt_tokens_details": {"cached_tokens": 3, "cache_type": "ephemeral"}}, 3, None, "explicit"),
    ({"prompt_tokens_details": {"cached_tokens": True}}, None, None, None),  # not a count
    ({"prompt_tokens": 10}, None, None, None),
    (None, None, None, None),
])
def test_the_usages_cache_figures(usage, cached, written, kind):
    assert (cached_tokens(usage), cache_write_tokens(usage)) == (cached, written)
    got, wrote, _, said = read_cache(usage)  # at once (the ledger's row)
    assert (got, wrote, said) == (cached, written, kind)
    for odd in ({"prompt_tokens_details": "x", "cached_tokens": 2}, {"prompt_tokens_details": {"cached_tokens": None},
                "cached_tokens": 4}, {"prompt_tokens_details": {"cache_write_tokens": 0, "cached_tokens": 0}}):
        assert read_cache(odd)[:2] == (cached_tokens(odd), cache_write_tokens(odd))


def test_usage_int_takes_only_integers():
    assert usage_int({"prompt_tokens": 12}, "prompt_tokens") == 12
    assert usage_int({"prompt_tokens": 1.5}, "prompt_tokens") is None and usage_int({"x": False}, "x") is None
    assert usage_int(None, "prompt_tokens") is None
