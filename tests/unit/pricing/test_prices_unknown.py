"""Unknown is a value, never $0 (issues 79 and 81): what a cache miss lost is priced as the request was — the
account's own list first, its tier — and is unknown where the read's price is not given."""

from __future__ import annotations

import pytest

from qwen_gateway.pricing import prices
from qwen_gateway.price_tier import Tier

MISS = {"prompt_tokens": 4000, "prompt_tokens_details": {"cached_tokens": 3000}}  # 3,000 tokens read (or lost)
LISTED = (Tier(32_000, 7.0, 21.0, cached=1.4, name="Input<=32k"), Tier(None, 9.0, 27.0, cached=1.8, name="Default"))


def test_what_the_cache_saved_is_priced_by_the_accounts_list_and_its_tier():
    table = prices.builtin()
    # qwen3-coder-plus is in the table ($1.0 input, $0.2 cached up to 32k): the list outranks it, as it does the charge
    assert table.saved("payg:intl", "qwen3-coder-plus", MISS, listed=LISTED) == pytest.approx(3000 * (7.0 - 1.4) / 1e6)
    big = {"prompt_tokens": 40_000, "prompt_tokens_details": {"cached_tokens": 3000}}
    assert table.saved("payg:intl", "qwen3-coder-plus", big, listed=LISTED) == pytest.approx(3000 * (9.0 - 1.8) / 1e6)
    # a model the table does not price on the account's billing: the list alone prices it
    assert table.saved("", "my-listed-model", MISS, listed=LISTED) == pytest.approx(3000 * (7.0 - 1.4) / 1e6)


def test_a_read_whose_price_is_not_given_saved_an_unknown_amount_never_0():
    table = prices.builtin()
    no_read_price = (Tier(None, 7.0, 21.0),)  # input and output only: the implicit read's price unknown
    assert table.saved("", "my-listed-model", MISS, listed=no_read_price) is None
    assert table.saved("payg:intl", "qwen3.7-max", MISS) is None  # the table's row gives no cached price either
    assert table.saved("", "no-price-anywhere", MISS) is None
    explicit = {**MISS, "prompt_tokens_details": {"cached_tokens": 3000, "cache_type": "ephemeral"}}
    # the explicit cache's read has Model Studio's documented default (10 % of the input price)
    assert table.saved("", "my-listed-model", explicit, listed=no_read_price) == pytest.approx(3000 * 7.0 * 0.9 / 1e6)
