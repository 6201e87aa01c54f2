"""Model Studio's own model list, `GET /api/v1/models?page_no=N&page_size=100&language=en-US` on the host of a
key account's base (../shared/docs/dashscope-rules.md, "Qwen's own model list, with prices"): per model, price
tiers named by input size (`range_name` "Input<=32k", "32k<Input<=128k", "Default"), each with typed prices
(`input_token`, `output_token`, `input_token_cache` (implicit read), `input_token_cache_read` (explicit read),
`input_token_cache_creation_5m`, `input_token_cache_creation_1h`, `thinking_output_token`), and `model_info`
(context window, max input, max output, reasoning max output), `published_time`. The answer is
`{"output": {"total", "page_no", "page_size", "models": [...]}}`.

Decoding only (pure); key_models.py fetches. What the list does not say stays unknown: a model without USD
prices per million tokens (another currency, another unit, a standard-time price missing) carries no tiers and
is priced by the catalogue; a missing cap is None. A price of 0 is no price either (a list's glitch is not a gift):
not taken unless the catalogue prices that very field of the model at 0 too (an embedding model's output) — an input
or output of 0 leaves the model to the catalogue, a cache price of 0 to its documented default."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from ...models import catalogue
from ...models.listed import ListedModel
from ...price_tier import Tier
from .headers import target

PAGE_SIZE = 100
MOST_PAGES = 20  # 2,000 models: a list that pages on past this is not read further
_RANGE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)([kKmM]?)\s*<\s*)?(?:Input|输入)\s*(<=|>)\s*(\d+(?:\.\d+)?)([kKmM]?)\s*$")
_PRICE_FIELDS = {"input_token": "input", "output_token": "output", "input_token_cache": "cached",
                 "input_token_cache_read": "cache_read", "input_token_cache_creation_5m": "cache_write",
                 "input_token_cache_creation_1h": "cache_write_1h", "thinking_output_token": "thinking_output"}
# the catalogue's tier tuple after its bound (models/catalogue.Tier), as Tier's fields
_CATALOGUE_FIELDS = ("input", "output", "cached", "thinking_output", "cache_read", "cache_write", "cache_write_1h")


def path(page: int) -> str:
    return f"/api/v1/models?page_no={page}&page_size={PAGE_SIZE}&language=en-US"


def url(base: str, page: int) -> tuple[str, str]:
    """(URL, Host header) of the list's page `page` on the host of an account's API base."""
    root, host = target(base, "")
    return root.split("://", 1)[0] + "://" + host + path(page), host


def page(raw: bytes) -> tuple[list[dict], int]:
    """(the page's model records, the list's total); ValueError when the answer is not the list."""
    data = json.loads(raw)
    output = data.get("output") if isinstance(data, dict) else None
    models = output.get("models") if isinstance(output, dict) else None
    total = output.get("total") if isinstance(output, dict) else None
    if not isinstance(models, list) or not isinstance(total, int) or isinstance(total, bool):
        raise ValueError("not Model Studio's model list")
    return [m for m in models if isinstance(m, dict) and isinstance(m.get("model"), str) and m["model"]], total


class Pages:
    """The list read page by page, for a reader of its own transport (the gateway's pool, the check's httpx):
    `next()` the next page's (URL, Host header), None once every record is in (or MOST_PAGES were read);
    `take(raw)` that page's answer (ValueError: not the list)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.records: list[dict] = []
        self.number = 0
        self.done = False

    def next(self) -> tuple[str, str] | None:
        if self.done or self.number >= MOST_PAGES:
            return None
        self.number += 1
        return url(self.base, self.number)

    def take(self, raw: bytes) -> None:
        found, total = page(raw)
        self.records += found
        self.done = not found or len(self.records) >= total


def model(record: dict) -> tuple[ListedModel, str]:
    """One model's facts, and why its prices were not taken ("": they were, or it has none)."""
    info = record.get("model_info")
    info = info if isinstance(info, dict) else {}
    tiers, why = prices(record.get("prices"), free(record["model"]))
    published = record.get("published_time")
    return ListedModel(record["model"], tiers, _count(info.get("context_window")), _count(info.get("max_input_tokens")),
                       _count(info.get("max_output_tokens")), _count(info.get("reasoning_max_output_tokens")),
                       published if isinstance(published, str) else "",
                       other_bands(record.get("prices")) if tiers is not None else ()), why


def other_bands(raw: Any) -> tuple[str, ...]:
    """The time bands besides the standard one that the list prices (peak, off-peak …), as it names them: the list
    does not say their hours, so their prices are not applied — said on each answer the standard price priced."""
    found = [item.get("time_band") for tier in raw if isinstance(tier, dict)
             for item in tier.get("prices") or [] if isinstance(item, dict)] if isinstance(raw, list) else []
    return tuple(dict.fromkeys(str(b) for b in found if b not in (None, "", "standard")))


def free(model: str) -> frozenset[str]:
    """The prices (Tier's fields) the catalogue gives `model` as 0 in every tier of one of its billings: what a 0
    in its list may mean."""
    row = catalogue.find(model)
    found: set[str] = set()
    for tiers in (row.prices.values() if row is not None else ()):
        found |= {name for i, name in enumerate(_CATALOGUE_FIELDS, 1) if all(t[i] == 0 for t in tiers)}
    return frozenset(found)


def prices(raw: Any, free: frozenset[str] = frozenset()) -> tuple[tuple[Tier, ...] | None, str]:
    """The tiers in USD per million tokens, smallest prompts first; None and why, when they cannot be read as
    that (an unknown range name, another currency or unit, no standard-time input and output price, an input or
    output of 0 where `free` does not name it)."""
    if not isinstance(raw, list) or not raw:
        return None, ""
    tiers: list[tuple[int | None, Tier]] = []
    for tier in raw:
        name = tier.get("range_name") if isinstance(tier, dict) else None
        bound = upper(name) if isinstance(name, str) else False
        if bound is False:
            return None, f"a price tier the gateway cannot read ({name!r})"
        fields: dict[str, float] = {}
        zeros: list[str] = []
        for item in tier.get("prices") or []:
            if not isinstance(item, dict) or item.get("type") not in _PRICE_FIELDS:
                continue
            if item.get("time_band") not in (None, "", "standard"):
                continue  # a peak or off-peak band: the standard price is the one every request pays at least
            unit = str(item.get("price_unit") or "")
            if "USD" not in unit.upper() and "$" not in unit:
                return None, f"prices in {unit or 'an unnamed currency'}, not USD"
            per = _per_million(unit)
            value = _number(item.get("price"))
            if per is None or value is None:
                return None, f"a price the gateway cannot read ({item.get('price')!r} {unit})"
            field = _PRICE_FIELDS[item["type"]]
            if value == 0 and field not in free:
                zeros.append(item["type"])  # unknown, never $0: the field is left to the catalogue or its default
                continue
            fields[field] = value * per
        if "input" not in fields or "output" not in fields:
            if zeros:
                return None, f"a price of 0 ({', '.join(zeros)} in {name!r}) that the catalogue does not give as free"
            return None, f"no input and output price in {name!r}"
        tiers.append((bound, Tier(bound, fields.pop("input"), fields.pop("output"), name=str(name), **fields)))
    tiers.sort(key=lambda t: float("inf") if t[0] is None else t[0])
    if sum(b is None for b, _ in tiers) > 1 or len({b for b, _ in tiers}) < len(tiers):
        return None, "price tiers that overlap"
    # the top tier counts every prompt above the one below it ("256k<Input<=1M": the model takes no more)
    return tuple(t for _, t in tiers[:-1]) + (dataclasses.replace(tiers[-1][1], up_to=None),), ""


def upper(name: str) -> int | None | bool:
    """The prompt size a range name bounds ("Input<=32k": 32,000; "32k<Input<=128k": 128,000), None for the
    open-ended one ("Default", "Input>128k"), False for a name it cannot read."""
    if name.strip().lower() == "default":
        return None
    m = _RANGE.match(name)
    if m is None:
        return False
    return _tokens(m.group(4), m.group(5)) if m.group(3) == "<=" else None


def _tokens(number: str, suffix: str) -> int:
    return round(float(number) * {"": 1, "k": 1_000, "m": 1_000_000}[suffix.lower()])


def _per_million(unit: str) -> float | None:
    """USD per million tokens from the unit's wording ("USD/1M tokens", "$ per 1K tokens"); None: unknown."""
    u = unit.lower().replace(" ", "")
    if "1m" in u or "million" in u:
        return 1.0
    if "1k" in u or "thousand" in u:
        return 1_000.0
    return None


def _number(value: Any) -> float | None:
    try:
        n = float(value)
    except (TypeError, ValueError):
        return None
    return n if n >= 0 and n == n and n != float("inf") else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
