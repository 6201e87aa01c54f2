"""The built-in price list: USD per million tokens of Alibaba Cloud Model Studio's pay-as-you-go Qwen models,
by region, and the unit of the plans that are not billed in money. prices.py reads it; a user file
(`qwen_prices_file`, docs/keys.md) overrides or extends it.

Source: Model Studio's "Models and pricing" page, https://www.alibabacloud.com/help/en/model-studio/model-pricing
(international = Singapore, US = Virginia; China (Beijing) is priced in CNY there and is converted here at
1 USD = 6.97 CNY), as transcribed with its tiers in models.dev (providers/alibaba and alibaba-cn, read on
2026-11-23; that copy of the page is dated 2026-08-26). The flagship minimums agree with
https://www.alibabacloud.com/help/en/model-studio/billing-for-model-studio (qwen-max $1.6 / $6.4, qwen-plus
$0.4 / $1.2, qwen-turbo $0.05 / $0.2 per million input / output tokens).

Each model has tiers by the request's prompt size: (prompt tokens up to, input, output, cached input,
output in thinking mode or None). Every token of a request is billed at its tier's price.
"""

from __future__ import annotations

TAKEN = "2026-11-23"
SOURCE = "https://www.alibabacloud.com/help/en/model-studio/model-pricing"

K = 1000
Tier = tuple[int | None, float, float, float | None, float | None]

PAYG: dict[str, dict[str, list[Tier]]] = {
    "payg:intl": {
        "qwen3-coder-plus": [(32 * K, 1.0, 5.0, 0.2, None), (128 * K, 1.8, 9.0, 0.36, None),
                             (256 * K, 3.0, 15.0, 0.6, None), (None, 6.0, 60.0, 1.2, None)],
        "qwen3-coder-flash": [(32 * K, 0.3, 1.5, 0.06, None), (128 * K, 0.5, 2.5, 0.1, None),
                              (256 * K, 0.8, 4.0, 0.16, None), (None, 1.6, 9.6, 0.32, None)],
        "qwen3-max": [(32 * K, 1.2, 6.0, 0.24, None), (128 * K, 2.4, 12.0, 0.48, None), (None, 3.0, 15.0, 0.6, None)],
        "qwen-max": [(None, 1.6, 6.4, 0.32, None)],
        "qwen-plus": [(256 * K, 0.4, 1.2, 0.08, 4.0), (None, 1.2, 3.6, 0.24, 12.0)],
        "qwen-flash": [(256 * K, 0.05, 0.4, 0.01, None), (None, 0.25, 2.0, 0.05, None)],
        "qwen-turbo": [(None, 0.05, 0.2, 0.01, 0.5)],
    },
    "payg:us": {
        "qwen-plus": [(256 * K, 0.4, 1.2, None, None), (None, 1.2, 3.6, None, None)],
        "qwen-flash": [(None, 0.05, 0.4, None, None)],
    },
    "payg:cn": {
        "qwen3-coder-plus": [(32 * K, 0.574, 2.294, 0.115, None), (128 * K, 0.861, 3.441, 0.173, None),
                             (256 * K, 1.434, 5.735, 0.287, None), (None, 2.868, 28.671, 0.574, None)],
        "qwen3-coder-flash": [(32 * K, 0.144, 0.574, 0.029, None), (128 * K, 0.216, 0.861, 0.044, None),
                              (256 * K, 0.359, 1.434, 0.072, None), (None, 0.717, 3.584, 0.144, None)],
        "qwen3-max": [(32 * K, 0.359, 1.434, 0.072, None), (128 * K, 0.574, 2.294, 0.115, None),
                      (None, 1.004, 4.014, 0.201, None)],
        "qwen-plus": [(128 * K, 0.115, 0.287, 0.023, 1.147), (256 * K, 0.345, 2.868, 0.069, 3.441),
                      (None, 0.689, 6.881, 0.138, 9.175)],
        "qwen-flash": [(128 * K, 0.022, 0.216, 0.005, None), (256 * K, 0.087, 0.861, 0.018, None),
                       (None, 0.173, 1.721, 0.035, None)],
    },
}

# Plans paid by subscription count in their own unit (Model Studio's "Token Plan overview": the Coding Plan
# is "based on model invocation count" with per-5-hour and weekly quotas; the Token Plan deducts credits
# "based on token consumption").
PLAN_UNITS = {"coding": "requests", "token": "tokens"}
