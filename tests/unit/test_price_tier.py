"""A price tier and one read from the user's prices file (price_tier.py)."""

from __future__ import annotations

import pytest

from qwen_gateway.price_tier import Tier, parse


def test_a_single_price_is_one_unbounded_tier_with_its_extras():
    assert parse({"input": 1, "output": 4, "cached": 0.2}, "m") == (Tier(None, 1.0, 4.0, cached=0.2),)


def test_tiers_are_bounded_but_the_last():
    tiers = parse({"tiers": [{"up_to": 32_000, "input": 1, "output": 2}, {"input": 3, "output": 6}]}, "m")
    assert [t.up_to for t in tiers] == [32_000, None]
    with pytest.raises(ValueError, match="every tier but the last needs up_to"):
        parse({"tiers": [{"input": 1, "output": 2}, {"input": 3, "output": 6}]}, "m")
    with pytest.raises(ValueError, match="numbers ≥ 0"):
        parse({"input": -1, "output": 2}, "m")
