"""The built-in price list (pricing/price_list.py): the models and regions docs/keys.md#money says it holds, at
Model Studio's prices (USD per million tokens, by prompt tier), every prompt size falling in a tier, snapshots
priced as their family, and the plans' own units. tests/unit/pricing/test_prices.py prices requests with it."""

from __future__ import annotations

from qwen_gateway.models.catalogue import ROWS
from qwen_gateway.pricing.price_list import BATCH, BATCH_SOURCE, PAYG, PLAN_UNITS, SOURCE, TAKEN

INTL_AND_CN = {"qwen3-coder-plus", "qwen3-coder-flash", "qwen3-max", "qwen-plus", "qwen-flash"}


def test_the_models_and_regions_docs_keys_md_names():
    assert set(PAYG) == {"payg:intl", "payg:cn", "payg:us"}
    assert set(PAYG["payg:intl"]) == INTL_AND_CN | {"qwen-max", "qwen-turbo"}
    assert set(PAYG["payg:cn"]) == INTL_AND_CN
    assert set(PAYG["payg:us"]) == {"qwen-plus", "qwen-flash"}


def test_where_and_when_the_figures_were_taken():
    assert (TAKEN, SOURCE) == ("2026-11-23", "https://www.alibabacloud.com/help/en/model-studio/model-pricing")


def test_tiers_by_prompt_size_up_to_an_open_last_one():
    """(prompt tokens up to, input, output, cached input, thinking output): qwen3-max international, as Model
    Studio lists it — $1.2 / $6 per million up to 32K prompt tokens, then $2.4 / $12, then $3 / $15."""
    assert PAYG["payg:intl"]["qwen3-max"] == [(32_000, 1.2, 6.0, 0.24, None), (128_000, 2.4, 12.0, 0.48, None),
                                             (None, 3.0, 15.0, 0.6, None)]
    assert PAYG["payg:intl"]["qwen-plus"][0] == (256_000, 0.4, 1.2, 0.08, 4.0)  # thinking output priced apart
    assert PAYG["payg:us"]["qwen-flash"] == [(None, 0.05, 0.4, None, None)]  # no cached price there
    for billing, models in PAYG.items():
        for model, tiers in models.items():
            bounds = [t[0] for t in tiers]
            assert bounds[-1] is None, (billing, model)  # any prompt size has a price
            assert all(b is not None for b in bounds[:-1]) and bounds[:-1] == sorted(set(bounds[:-1])), (billing, model)
            assert all(t[1] > 0 and t[2] >= t[1] for t in tiers), (billing, model)  # output dearer than input
            assert all(t[3] is None or t[3] < t[1] for t in tiers), (billing, model)  # a cache read is cheaper


def test_a_snapshot_is_priced_as_its_family_not_listed_again():
    assert ROWS["qwen3-max-2026-01-23"].family == "qwen3-max"
    assert ROWS["qwen3-max-2026-01-23"].prices is ROWS["qwen3-max"].prices
    assert all("qwen3-max-2026-01-23" not in models for models in PAYG.values())


def test_plans_count_in_their_own_unit():
    assert PLAN_UNITS == {"coding": "requests", "token": "tokens"}


def test_a_batch_is_billed_at_half_the_price_as_model_studios_batch_page_says():
    assert BATCH == 0.5
    assert BATCH_SOURCE.startswith('Model Studio, "OpenAI compatible - Batch (file input)"')
    assert "50% of the real-time price" in BATCH_SOURCE
