"""Fallbacks by model group (models/fallbacks.py, `qwen_fallbacks`): the option's parsing and the choice of the
next model."""

from __future__ import annotations

import logging

import pytest

from qwen_gateway.models.fallbacks import NOT_FOUND, WINDOW, choose, parse_fallbacks


def test_a_group_is_found_by_the_model_it_stands_in_for():
    fb = parse_fallbacks(["qwen3-max=qwen4-max, qwen3.6-plus", "qwen3-coder-plus=qwen3.6-plus"])
    group = fb.group("qwen3-max")
    assert group is not None and group.fallbacks == tuple("qwen4-max qwen3.6-plus".split())
    assert str(group) == "qwen3-max=qwen4-max,qwen3.6-plus"
    assert fb.group("qwen3.6-plus") is None  # a fallback is no group of its own
    assert fb.group("gpt-4o") is None and not parse_fallbacks([])


@pytest.mark.parametrize(("entry", "why"), [
    ("qwen3-max", "is not MODEL=FALLBACK"),
    ("=qwen4-max", "is not MODEL=FALLBACK"),
    ("qwen3-max=", "is not MODEL=FALLBACK"),
    ("qwen3-max=qwen4-max,,qwen3.6-plus", "is not MODEL=FALLBACK"),
    ("qwen3-max=qwen3-max", "named twice"),
    ("qwen3-max=qwen4-max,qwen4-max", "named twice"),
    ("qwen3-max=text-embedding-v4", "not a chat model"),
])
def test_a_bad_entry_is_refused_with_its_reason(entry, why):
    with pytest.raises(ValueError, match=f"qwen_fallbacks: .*{why}"):
        parse_fallbacks([entry])


def test_one_group_per_model():
    with pytest.raises(ValueError, match="has a group already"):
        parse_fallbacks(["qwen3-max=qwen4-max", "qwen3-max=qwen3.6-plus"])


def test_a_model_the_catalogue_does_not_name_is_named_at_start(caplog):
    with caplog.at_level(logging.WARNING):
        fb = parse_fallbacks(["qwen3-max=Qwen/Qwen3-8B"])
    assert fb.group("qwen3-max") is not None  # a team's server may serve it: its list decides
    assert "qwen_fallbacks: 'qwen3-max=Qwen/Qwen3-8B': Qwen/Qwen3-8B is not in the catalogue" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        parse_fallbacks(["qwen3-max=qwen4-max"])
    assert caplog.text == ""


def test_the_next_model_is_the_first_not_refused_yet():
    group = parse_fallbacks(["qwen3-max=qwen4-max,qwen3.6-plus"]).group("qwen3-max")
    assert group is not None
    assert choose(group, ["qwen3-max"], why=NOT_FOUND, needed=None) == ("qwen4-max", [])
    assert choose(group, "qwen3-max qwen4-max".split(), why=NOT_FOUND, needed=None) == ("qwen3.6-plus", [])
    assert choose(group, "qwen3-max qwen4-max qwen3.6-plus".split(), why=NOT_FOUND, needed=None) == (None, [])


def test_a_window_refusal_passes_over_a_fallback_too_small_for_the_prompt():
    windows = {"small": 100_000, "large": 1_000_000}
    group = parse_fallbacks(["qwen3-max=small,unknown-window,large"]).group("qwen3-max")
    assert group is not None
    chosen, passed = choose(group, ["qwen3-max"], why=WINDOW, needed=300_000, window=windows.get)
    assert chosen == "unknown-window"  # unknown is no zero: its server decides
    assert passed == ["small passed over: its window (100,000 tokens) is under the prompt's 300,000"]
    assert choose(group, "qwen3-max unknown-window".split(), why=WINDOW, needed=300_000,
                  window=windows.get)[0] == "large"
    # the prompt's size unknown: nothing is passed over for it; another refusal never looks at windows
    assert choose(group, ["qwen3-max"], why=WINDOW, needed=None, window=windows.get)[0] == "small"
    assert choose(group, ["qwen3-max"], why=NOT_FOUND, needed=300_000, window=windows.get)[0] == "small"
