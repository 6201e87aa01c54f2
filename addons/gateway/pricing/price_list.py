"""The built-in price list: USD per million tokens of Alibaba Cloud Model Studio's pay-as-you-go Qwen models,
by region, as the model catalogue holds them (models/catalogue.toml's `price` rows: source M, then W–Z), and the
unit of the plans that are not billed in money. pricing/prices.py reads it; a user file (`qwen_prices_file`, docs/keys.md)
overrides or extends it.

Each model has tiers by the request's prompt size: (prompt tokens up to, input, output, cached input,
output in thinking mode or None). Every token of a request is billed at its tier's price.
"""

from __future__ import annotations

from ..models.catalogue import BATCH_RATE, BATCH_RATE_SOURCES, ROWS, SOURCES, Tier

TAKEN = "2026-11-23"
SOURCE = "https://www.alibabacloud.com/help/en/model-studio/model-pricing"
assert SOURCE.removeprefix("https://www.") in SOURCES["M"] and TAKEN in SOURCES["M"]  # the catalogue's source M

PAYG: dict[str, dict[str, list[Tier]]] = {}
for _row in ROWS.values():
    for _billing, _tiers in _row.prices.items():
        if _row.family is None or _row.prices is not ROWS[_row.family].prices:  # a snapshot is priced as its family
            PAYG.setdefault(_billing, {})[_row.id] = list(_tiers)

# Plans paid by subscription count in their own unit (Model Studio's "Token Plan overview": the Coding Plan
# is "based on model invocation count" with per-5-hour and weekly quotas; the Token Plan deducts credits
# "based on token consumption").
PLAN_UNITS = {"coding": "requests", "token": "tokens"}

# A batch's results (Model Studio's Batch API, /v1/batches) are billed at this share of the real-time price:
# the catalogue's `batch_rate`, from its source T ("OpenAI compatible - Batch (file input)").
BATCH = BATCH_RATE
BATCH_SOURCE = SOURCES[BATCH_RATE_SOURCES]
