"""What a request cost: money for pay-as-you-go accounts (USD: the account's own list from Qwen where read, else
pricing/price_list.py; the user's `qwen_prices_file` over both), a plan's own unit for Coding and Token Plans.

Parsed once in `configure` (settings/config.py); `PriceTable.charge` is pure and cheap, once per exchange
(turn/settlement.py). The account's `billing` (its provider's plans: upstream/dashscope/plans.billing_of: "payg:intl",
"coding", …) and the Qwen model that answered choose the price; "*" in a user file is the default for what the
account's billing does not price (OAuth logins, web sessions, self-hosted or other endpoints; a model missing from the
list).

An answer Qwen reported no usage for (its usage missing or cut) is USAGE_UNKNOWN: its tokens and cost unknown, never
0 (but a plan counted in requests counts it). What nothing prices is *unpriced* (`Charge` with the unit UNPRICED and
no amount): its cost is unknown, never $0 —
unless `qwen_unpriced_as` names a priced model, whose price (on the account's billing, else pay-as-you-go
international) then counts it, said as `priced_as`. A named key with a USD budget never sends an unpriced request
(tenancy/team.py).

The user file (JSON), any of:

    {"payg:intl": {"qwen3-coder-plus": {"input": 1.0, "output": 5.0, "cached": 0.2}},
     "*": {"my-model": {"tiers": [{"up_to": 32000, "input": 1, "output": 4}, {"input": 2, "output": 8}]}},
     "coding": {"unit": "requests"}}

USD per million tokens; "cached" (input read from Qwen's implicit cache) defaults to the input price; "cache_read"
(read from its explicit cache) and "cache_write" (stored in it) default to 10% and 125% of the input price, as Model
Studio bills them (its "Context cache" page), unless the catalogue's row gives its own (qwen4-max: 5 % and 125 %);
"cache_write_1h" (stored for an hour: Qwen4's `ttl: "1h"`, `cache_creation.ephemeral_1h_input_tokens`) has no default
— a model whose row gives no price for it (qwen4-max's is 200 %) makes a request that wrote for an hour unpriced
until a file gives one; "thinking_output" is the output price when the answer reasoned (Qwen reported reasoning
tokens). An entry replaces the built-in one.

Which cache a request read is in Qwen's usage: `prompt_tokens_details.cache_type` "ephemeral" (or a
`cache_creation_input_tokens` count) is the explicit cache, `cached_tokens` without it the implicit one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from . import price_list
from ..price_tier import Tier, parse
from ..cache_usage import EXPLICIT, read as read_cache
from ..models import catalogue

USD, REQUESTS, TOKENS = "USD", "requests", "tokens"
UNPRICED = "unpriced"  # the unit of a request nothing prices: its cost is unknown, never $0
USAGE_UNKNOWN = "usage_unknown"  # the unit of an answer Qwen reported no usage for: its tokens and cost unknown
COST_UNKNOWN = (UNPRICED, USAGE_UNKNOWN)  # the units without an amount
FALLBACK_BILLING = "payg:intl"  # where qwen_unpriced_as's price is looked up when the account's billing has none
EXPLICIT_HIT, CREATION = 0.10, 1.25  # of the input price (Model Studio's Context cache page)
ANY = "*"
MEMO_MOST = 1024
_SNAPSHOT = re.compile(r"-(latest|\d{4}-\d\d-\d\d)$")  # qwen3-coder-plus-2025-09-23 is priced as qwen3-coder-plus


@dataclass(slots=True)  # not frozen: made once per answer, and a frozen __init__ costs 5x
class Charge:
    """What an answered request is counted at: `amount` in `unit` (USD, or a plan's requests or tokens), or no
    amount and the unit UNPRICED — unknown, never $0 (issue 59)."""

    amount: float | None
    unit: str
    saved: float | None = None  # USD Qwen's caches took off the prompt's price (None: not counted in USD)
    priced_as: str = ""  # the model whose price counted it (qwen_unpriced_as), when it has none of its own
    tier: str | None = None  # the listed tier that priced it (`listed`), None: the table priced it
    read_priced: bool = True  # its cache reads had a price of their own (False: counted at the input price)


@dataclass(frozen=True)
class PriceTable:
    models: Mapping[str, Mapping[str, tuple[Tier, ...]]] = field(default_factory=lambda: MappingProxyType({}))
    units: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    source: str = ""  # where the figures come from (the built-in list, then the user file)
    fallback: str = ""  # qwen_unpriced_as: the model whose price counts a request that has none ("": unpriced)
    from_file: frozenset[tuple[str, str]] = frozenset()  # (billing, model) the user's qwen_prices_file prices
    # (billing, model) -> what _price found: asked once per answer about the few pairs a gateway serves; model
    # names come from clients, so it starts over past MEMO_MOST pairs
    _memo: dict = field(default_factory=dict, compare=False, repr=False)

    def charge(self, billing: str, model: str, usage: dict | None, *, batch: bool = False,
               listed: tuple[Tier, ...] | None = None) -> Charge | None:
        """What one answered request is counted at, or None (no usage reported). `batch`: a batch's request, at
        price_list.BATCH of the price in money. `listed`: the account's own list's prices (models/listed.py),
        over the built-in table on an account billed in money, unless the user's file prices the model."""
        if not isinstance(usage, dict):
            return None
        found, priced_as = self._price(billing, model)
        if listed and not isinstance(found, str) and not self._users(billing, model):
            found, priced_as = listed, ""
        prompt, completion = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
        if found is None:
            return Charge(None, UNPRICED)
        if found == REQUESTS:
            return Charge(1.0, REQUESTS)
        if found == TOKENS:
            return Charge(float(prompt + completion), TOKENS)
        assert isinstance(found, tuple)
        tier = _tier(found, prompt)
        out_details = usage.get("completion_tokens_details")
        reasoned = _int(out_details.get("reasoning_tokens")) if isinstance(out_details, dict) else 0
        out_price = tier.thinking_output if reasoned and tier.thinking_output is not None else tier.output
        prompt_usd, read_priced = _prompt_usd(tier, usage, prompt)
        if prompt_usd is None:  # an hour-long cache write nothing prices
            return Charge(None, UNPRICED)
        amount = (prompt_usd + completion * out_price) / 1e6
        return Charge(amount * price_list.BATCH if batch else amount, USD, (prompt * tier.input - prompt_usd) / 1e6,
                      priced_as, tier.name if found is listed else None, read_priced)

    def unreported(self, billing: str, model: str) -> Charge:
        """What an answer Qwen reported no usage for (missing, cut) is counted at: the request, on a plan counted
        in requests; else USAGE_UNKNOWN, no amount — never 0."""
        return Charge(1.0, REQUESTS) if self._price(billing, model)[0] == REQUESTS else Charge(None, USAGE_UNKNOWN)

    def cost(self, billing: str, model: str, usage: dict | None, *, batch: bool = False,
             listed: tuple[Tier, ...] | None = None) -> tuple[float, str] | None:
        """(amount, unit) of one answered request, or None (no usage reported, no price known)."""
        charged = self.charge(billing, model, usage, batch=batch, listed=listed)
        return None if charged is None or charged.amount is None else (charged.amount, charged.unit)

    def saved(self, billing: str, model: str, usage: dict | None, *,
              listed: tuple[Tier, ...] | None = None) -> float | None:
        """USD Qwen's caches took off the prompt's price (negative: cache writes that cost more than the hits
        saved), priced as `charge` prices the request (`listed` first); None without a price in USD, or when the
        tier gives no price for the cache it read (an implicit read without `cached`): unknown, never 0."""
        charged = self.charge(billing, model, usage, listed=listed)
        return None if charged is None or not charged.read_priced else charged.saved

    def priced(self, billing: str, model: str) -> bool:
        """Whether a request of `model` on an account of `billing` would be counted (in money or a plan's unit)."""
        return self._price(billing, model)[0] is not None

    def _price(self, billing: str, model: str) -> tuple[tuple[Tier, ...] | str | None, str]:
        """(its price, the model it is qwen_unpriced_as's price of or "") — the fallback's on the account's
        billing, else on pay-as-you-go international, when the model has none."""
        key = (billing, model)
        memo = self._memo
        found = memo.get(key)
        if found is None:
            if len(memo) >= MEMO_MOST:
                memo.clear()
            found = memo[key] = self._look_up(billing, model)
        return found

    def _look_up(self, billing: str, model: str) -> tuple[tuple[Tier, ...] | str | None, str]:
        found = self._find(billing, model)
        if found is not None or not self.fallback:
            return found, ""
        for where in (billing, FALLBACK_BILLING):
            tiers = self._find(where, self.fallback)
            if isinstance(tiers, tuple):
                return tiers, self.fallback
        return None, ""

    def _find(self, billing: str, model: str) -> tuple[Tier, ...] | str | None:
        """The account's billing first, then the user's default for anything else: a plan's unit, or tiers."""
        for where in (billing, ANY):
            unit = self.units.get(where)
            if unit:
                return unit
            tiers = self._tiers(where, model)
            if tiers is not None:
                return tiers
        return None

    def _users(self, billing: str, model: str) -> bool:
        """Whether the table's price for the model (the billing's, else `*`'s) is the user's qwen_prices_file's."""
        if not self.from_file:
            return False
        for where in (billing, ANY):
            if self._tiers(where, model) is not None:
                return any((where, name) in self.from_file for name in (model, _SNAPSHOT.sub("", model)))
        return False

    def _tiers(self, billing: str, model: str) -> tuple[Tier, ...] | None:
        """The model's, else its family's: `-latest`/`-YYYY-MM-DD` gone, or its catalogue row's `family`."""
        prices = self.models.get(billing)
        if not model or prices is None:
            return None
        found = prices.get(model) or prices.get(_SNAPSHOT.sub("", model))
        if found is None and (row := catalogue.find(model)) is not None and row.family:
            found = prices.get(row.family)
        return found


def _tier(tiers: tuple[Tier, ...], prompt: int) -> Tier:
    return next((t for t in tiers if t.up_to is None or prompt <= t.up_to), tiers[-1])


def _prompt_usd(tier: Tier, usage: dict, prompt: int) -> tuple[float | None, bool]:
    """The prompt's price (USD per million tokens × tokens): cache hits and writes at theirs, the rest at input;
    None when it wrote for an hour and the tier has no price for that. And whether the hits had a price of their
    own (an implicit read without `cached` is counted at the input price: what it saved is not known)."""
    cached, written, hour, kind = read_cache(usage)
    hits = min(prompt, cached or 0)
    written = min(prompt - hits, written or 0)
    if kind == EXPLICIT:
        hit = tier.input * EXPLICIT_HIT if tier.cache_read is None else tier.cache_read
    else:
        hit = tier.input if tier.cached is None else tier.cached
    write = tier.input * CREATION if tier.cache_write is None else tier.cache_write
    hour = min(written, hour)
    if hour and tier.cache_write_1h is None:
        return None, True
    return (prompt - hits - written) * tier.input + hits * hit + (written - hour) * write + \
        hour * (tier.cache_write_1h or 0.0), kind == EXPLICIT or tier.cached is not None or not hits


def usd(amount: float) -> str:
    """An amount as people read it: cents from a dollar up, else to the millionth (one request costs little)."""
    return "$0" if not amount else f"${amount:,.2f}" if amount >= 1 else f"${amount:.6f}"


def signed_usd(amount: float) -> str:
    """An amount that may be negative (what the cache saved: writes cost more than the hits saved)."""
    return "-" + usd(-amount) if amount < 0 else usd(amount)


def _int(v: object) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0


def builtin() -> PriceTable:
    models = {billing: {m: tuple(Tier(*t) for t in tiers) for m, tiers in table.items()}
              for billing, table in price_list.PAYG.items()}
    return PriceTable(_frozen(models), MappingProxyType(dict(price_list.PLAN_UNITS)),
                      f"{price_list.SOURCE} (taken {price_list.TAKEN})")


def load(path: str, unpriced_as: str = "") -> PriceTable:
    """The built-in table, with the user file's entries over it, counting unpriced requests at `unpriced_as`'s
    price (qwen_unpriced_as) when given. Raises ValueError naming what is wrong."""
    table = _with_file(builtin(), path) if path else builtin()
    if not unpriced_as:
        return table
    if not isinstance(table._find(FALLBACK_BILLING, unpriced_as), tuple):
        named = ", ".join(sorted(m for m in table.models.get(FALLBACK_BILLING, {}) if m))
        raise ValueError(f"qwen_unpriced_as: {unpriced_as} has no price in USD on pay-as-you-go international "
                         f"({FALLBACK_BILLING}, the built-in list or qwen_prices_file), so it cannot price what has "
                         f"none: name a priced model ({named}) or give {unpriced_as} a price in qwen_prices_file")
    return replace(table, fallback=unpriced_as)


def _with_file(base: PriceTable, path: str) -> PriceTable:
    try:
        data = json.loads(Path(path).expanduser().read_text())
    except OSError as e:
        raise ValueError(f"qwen_prices_file: cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise ValueError(f"qwen_prices_file: {path} is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"qwen_prices_file: {path} must hold an object of billings (payg:intl, coding, *, …)")
    models = {b: dict(m) for b, m in base.models.items()}
    units = dict(base.units)
    for billing, entries in data.items():
        where = f"qwen_prices_file: {billing!r}"
        if not isinstance(entries, dict):
            raise ValueError(f"{where} must be an object of models")
        if "unit" in entries:
            if entries["unit"] not in (REQUESTS, TOKENS) or len(entries) > 1:
                raise ValueError(f'{where}: "unit" is "requests" or "tokens", alone (a plan not billed in money)')
            units[billing] = entries["unit"]
            continue
        units.pop(billing, None)
        for model, price in entries.items():
            models.setdefault(billing, {})[model] = parse(price, f"{where}, {model!r}")
    mine = frozenset((b, m) for b, entries in data.items() if isinstance(entries, dict) and "unit" not in entries
                     for m in entries)
    return PriceTable(_frozen(models), MappingProxyType(units), f"{base.source}; {path}", from_file=mine)


def _frozen(models: dict) -> Mapping[str, Mapping[str, tuple[Tier, ...]]]:
    return MappingProxyType({b: MappingProxyType(dict(m)) for b, m in models.items()})
