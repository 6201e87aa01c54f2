"""`qwen_unpriced_as` (settings/option_table.py, parsed once by settings/config.py): empty by default (what has no
price is unpriced, and refused to a key with a USD budget); a priced model's name makes the price table count
unpriced requests at its price; a model without a price in USD is refused with a line that says which to name."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions

from qwen_gateway.pricing.prices import UNPRICED

from helpers.observe_testlib import parsed_config

USAGE = {"prompt_tokens": 1000, "completion_tokens": 10}


def test_by_default_what_has_no_price_stays_unpriced():
    prices = parsed_config().prices
    assert prices.fallback == "" and prices.charge("payg:intl", "qwen3.7-flash", USAGE).unit == UNPRICED


def test_a_priced_model_counts_what_has_no_price():
    prices = parsed_config(qwen_unpriced_as="qwen3-max").prices
    assert prices.fallback == "qwen3-max"
    assert prices.charge("payg:intl", "qwen3.7-flash", USAGE).priced_as == "qwen3-max"


def test_an_unpriced_model_is_refused_with_what_to_name_instead():
    with pytest.raises(exceptions.OptionsError) as e:
        parsed_config(qwen_unpriced_as="qwen3.7-flash")
    assert str(e.value).startswith("qwen_unpriced_as: qwen3.7-flash has no price in USD")
    assert "qwen3-coder-plus" in str(e.value) and "qwen_prices_file" in str(e.value)


def test_a_name_with_spaces_is_not_a_model():
    with pytest.raises(exceptions.OptionsError, match="option qwen_unpriced_as: got 'qwen3 max'; accepts a model name"):
        parsed_config(qwen_unpriced_as="qwen3 max")
