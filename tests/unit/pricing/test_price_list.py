"""The built-in price list (pricing/price_list.py): the models and regions docs/keys.md#money says it holds, at
Model Studio's prices (USD per million tokens, by prompt tier), every prompt size falling in a tier, snapshots
priced as their family, and the plans' own units. tests/unit/pricing/test_prices.py prices requests with it."""

from __future__ import annotations

from qwen_gateway.models.catalogue import EMBEDDING, ROWS, SOURCES
from qwen_gateway.models.model_map import DEFAULT_ALIASES, KEY_DEFAULT_MODEL, KEY_VISION_MODEL
from qwen_gateway.models.routes import siblings
from qwen_gateway.pricing.price_list import BATCH, BATCH_SOURCE, PAYG, PLAN_UNITS, SOURCE, TAKEN

INTL_AND_CN = {"qwen3-coder-plus", "qwen3-coder-flash", "qwen3-max", "qwen-plus", "qwen-flash"}
INTL_SINCE_ISSUE_59 = {"qwen4-max", "qwen3.8-max", "qwen3.7-max", "qwen3.6-plus", "qwen3.6-flash", "text-embedding-v4"}


def test_the_models_and_regions_docs_keys_md_names():
    assert set(PAYG) == {"payg:intl", "payg:cn", "payg:us"}
    assert set(PAYG["payg:intl"]) == INTL_AND_CN | {"qwen-max", "qwen-turbo"} | INTL_SINCE_ISSUE_59
    assert set(PAYG["payg:cn"]) == INTL_AND_CN | {"text-embedding-v4"}
    assert set(PAYG["payg:us"]) == {"qwen-plus", "qwen-flash"}


def picked_by_the_gateway() -> set[str]:
    """Every model a key account's request may be sent to without the client naming it: the default model, the
    image route's vision model, the aliases' targets (claude-haiku, OpenAI's embedding names), and the long-context
    siblings of every chat model (the OAuth portal's coder-model has no price anywhere: OAuth is not billed)."""
    picked = {KEY_DEFAULT_MODEL, KEY_VISION_MODEL} | {m for m in DEFAULT_ALIASES.values() if m}
    return picked | {s for m in ROWS for s in siblings(m)}


def test_every_model_the_gateway_picks_on_its_own_has_a_price_where_it_is_served():
    """Issue 59: a team's image traffic (routed to qwen3.6-plus) or long prompts (to a sibling) must not be
    invisible to its budgets. Priced on pay-as-you-go international, where the sources give a price."""
    unpriced = {m for m in picked_by_the_gateway() if "payg-intl" in ROWS[m].plans and m not in PAYG["payg:intl"]
                and ROWS[m].family is None}
    assert unpriced == set()
    assert {KEY_VISION_MODEL, "qwen4-max", "qwen3.8-max", "text-embedding-v4"} <= picked_by_the_gateway()


def test_the_prices_since_issue_59_as_their_sources_give_them():
    """Sources W–Z (models/catalogue.toml): third parties for qwen4-max, qwen3.8-max, and models.dev's
    transcription of Model Studio's model pages; Model Studio's own page for text-embedding-v4."""
    intl = PAYG["payg:intl"]
    # thinking billed as output (no price of its own); its explicit cache from its page (source AE): reads 5 %,
    # 5-minute writes 125 %, 1-hour writes 200 %
    assert intl["qwen4-max"] == [(None, 1.5, 4.5, 0.075, None, 0.075, 1.875, 3.0)]
    assert _five(intl["qwen3.8-max"]) == [(None, 2.0, 6.0, None, None)]
    assert _five(intl["qwen3.7-max"]) == [(None, 2.5, 7.5, None, None)]
    assert _five(intl["qwen3.6-plus"]) == [(256_000, 0.5, 3.0, None, None), (None, 2.0, 6.0, None, None)]
    assert _five(intl["qwen3.6-flash"]) == [(None, 0.1875, 1.125, None, None)]
    assert _five(intl["text-embedding-v4"]) == [(None, 0.07, 0.0, None, None)]
    assert _five(PAYG["payg:cn"]["text-embedding-v4"]) == [(None, 0.072, 0.0, None, None)]
    assert "qwen3-vl-plus" not in intl  # its source gives the first prompt tier only: unpriced, never guessed
    for model, letter in (("qwen4-max", "W"), ("qwen3.8-max", "X"), ("qwen3.7-max", "Y"), ("qwen3.6-plus", "Y"),
                          ("qwen3.6-flash", "Y"), ("text-embedding-v4", "Z")):
        assert letter in ROWS[model].sources.split(", "), model
    assert all(SOURCES[letter].startswith("Third party: ") for letter in "WXY")
    assert SOURCES["Z"].startswith("Model Studio, ")


def test_where_and_when_the_figures_were_taken():
    assert (TAKEN, SOURCE) == ("2026-11-23", "https://www.alibabacloud.com/help/en/model-studio/model-pricing")


def test_tiers_by_prompt_size_up_to_an_open_last_one():
    """(prompt tokens up to, input, output, cached input, thinking output, then the explicit cache's prices where a
    row gives its own): qwen3-max international, as Model Studio lists it — $1.2 / $6 per million up to 32K prompt
    tokens, then $2.4 / $12, then $3 / $15."""
    assert [t[:5] for t in PAYG["payg:intl"]["qwen3-max"]] == [(32_000, 1.2, 6.0, 0.24, None),
                                                               (128_000, 2.4, 12.0, 0.48, None),
                                                               (None, 3.0, 15.0, 0.6, None)]
    assert PAYG["payg:intl"]["qwen-plus"][0][:5] == (256_000, 0.4, 1.2, 0.08, 4.0)  # thinking output priced apart
    assert _five(PAYG["payg:us"]["qwen-flash"]) == [(None, 0.05, 0.4, None, None)]  # no cached price there
    for billing, models in PAYG.items():
        for model, tiers in models.items():
            bounds = [t[0] for t in tiers]
            assert bounds[-1] is None, (billing, model)  # any prompt size has a price
            assert all(b is not None for b in bounds[:-1]) and bounds[:-1] == sorted(set(bounds[:-1])), (billing, model)
            chat = ROWS[model].kind != EMBEDDING  # an embedding has no output
            assert all(t[1] > 0 and (t[2] >= t[1] if chat else t[2] == 0) for t in tiers), (billing, model)
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


def _five(tiers: list) -> list:
    """A row's tiers without the explicit cache's prices (None unless the row gives its own)."""
    assert all(t[5:] == (None, None, None) for t in tiers)
    return [t[:5] for t in tiers]
