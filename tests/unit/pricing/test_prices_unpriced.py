"""Unknown is a value, never zero (issue 59, item 1): a request whose (billing, model) has no price is charged as
*unpriced* — no amount, the unit `unpriced` — not $0; `qwen_unpriced_as` counts it at a priced model's price
instead (the account's billing, else pay-as-you-go international), and says which; a plan's unit is a price."""

from __future__ import annotations

import json

import pytest

from qwen_gateway.pricing import prices

USAGE = {"prompt_tokens": 1000, "completion_tokens": 100}


def test_an_unpriced_model_is_charged_as_unpriced_not_zero():
    table = prices.builtin()
    charge = table.charge("payg:intl", "qwen3.7-flash", USAGE)
    assert charge == prices.Charge(None, prices.UNPRICED)
    assert table.cost("payg:intl", "qwen3.7-flash", USAGE) is None and not table.priced("payg:intl", "qwen3.7-flash")
    assert table.charge("payg:intl", "qwen3.7-flash", None) is None  # no usage: nothing to charge


def test_a_priced_model_is_charged_its_own_price_with_what_the_cache_saved():
    table = prices.builtin()
    charge = table.charge("payg:intl", "qwen3-coder-plus", {**USAGE, "prompt_tokens_details": {"cached_tokens": 500}})
    assert charge.unit == prices.USD and charge.priced_as == ""
    assert charge.amount == pytest.approx((500 * 1.0 + 500 * 0.2 + 100 * 5.0) / 1e6)
    assert charge.saved == pytest.approx(500 * 0.8 / 1e6)
    assert table.priced("payg:intl", "qwen3-coder-plus")


def test_a_plans_unit_is_a_price_not_unpriced():
    table = prices.builtin()
    assert table.charge("coding", "qwen3.7-flash", USAGE) == prices.Charge(1.0, prices.REQUESTS)
    assert table.charge("token", "qwen3.7-flash", USAGE) == prices.Charge(1100.0, prices.TOKENS)
    assert table.priced("coding", "anything")


def test_unpriced_as_counts_it_at_that_models_price_on_the_accounts_billing_and_says_so():
    table = prices.load("", unpriced_as="qwen3-max")
    charge = table.charge("payg:cn", "qwen3.7-flash", USAGE)
    assert (charge.unit, charge.priced_as) == (prices.USD, "qwen3-max")
    assert charge.amount == pytest.approx((1000 * 0.359 + 100 * 1.434) / 1e6)  # qwen3-max's price in China
    assert table.priced("payg:cn", "qwen3.7-flash")
    # its own price, when it has one: never the fallback's
    assert table.charge("payg:intl", "qwen3-coder-plus", USAGE).priced_as == ""


def test_unpriced_as_falls_back_to_pay_as_you_go_international():
    table = prices.load("", unpriced_as="qwen3-max")
    for billing in ("", "payg:us"):  # an account the gateway cannot bill (OAuth, another host); no qwen3-max in US
        charge = table.charge(billing, "qwen3.7-flash", USAGE)
        assert (charge.unit, charge.priced_as) == (prices.USD, "qwen3-max")
        assert charge.amount == pytest.approx((1000 * 1.2 + 100 * 6.0) / 1e6)


def test_unpriced_as_naming_an_unpriced_model_is_refused_with_the_priced_ones(tmp_path):
    with pytest.raises(ValueError) as e:
        prices.load("", unpriced_as="qwen3.7-flash")
    assert "qwen_unpriced_as" in str(e.value) and "qwen3.7-flash" in str(e.value)
    assert "no price" in str(e.value) and "qwen3-max" in str(e.value)  # what it may name instead
    f = tmp_path / "prices.json"
    f.write_text(json.dumps({"*": {"my-model": {"input": 1, "output": 2}}}))
    assert prices.load(str(f), unpriced_as="my-model").priced("", "qwen3.7-flash")  # the operator's own price


def test_a_batch_of_an_unpriced_model_is_unpriced_too():
    table = prices.builtin()
    assert table.cost("payg:intl", "qwen3.7-flash", USAGE, batch=True) is None
    fallback = prices.load("", unpriced_as="qwen-plus").cost("payg:intl", "qwen3.7-flash", USAGE, batch=True)
    assert fallback == (pytest.approx((1000 * 0.4 + 100 * 1.2) / 1e6 / 2), prices.USD)
