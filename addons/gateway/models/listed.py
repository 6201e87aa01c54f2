"""What an account's provider lists of its own models (Model Studio's `GET /api/v1/models`: upstream/dashscope/
model_list.py reads it): per model its prices by input tier, context, output and reasoning caps and publish time,
as read at one moment. Qwen's own word about that account: it outranks the catalogue's older sources (what
`SeenBy` gives the body builder: a refusal's lesson first, then the list, then the catalogue) and prices the
account's answers (turn/settlement.py); the catalogue stays the fallback for whatever the list does not say.

Unknown stays unknown: a field the list does not give is None, never 0; prices in a currency other than USD
are not taken (the gateway counts money in USD and converts nothing on its own)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..price_tier import Tier
from .learned import INPUT, OUTPUT


@dataclass(frozen=True, slots=True)
class ListedModel:
    id: str
    tiers: tuple[Tier, ...] | None = None  # USD per million tokens by prompt size, each named as the list names it
    context: int | None = None
    max_input: int | None = None
    max_output: int | None = None
    reasoning_max_output: int | None = None
    published: str = ""
    other_bands: tuple[str, ...] = ()  # time bands it prices besides the standard one, hours not given: not applied
    served_by: str = ""  # what serves it, as the list says (a self-hosted server's `owned_by`: vllm, sglang)
    server_version: str = ""  # that server's release, as its /version says ("": not said)


@dataclass(frozen=True)
class ModelList:
    account: str
    read_at: float  # epoch seconds
    models: Mapping[str, ListedModel]
    unpriced_why: str = ""  # why its prices were not taken ("": they were, or it gave none)

    def said(self) -> str:
        return f"{self.account}'s model list from Qwen, read {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(self.read_at))}"

    def tiers(self, model: str) -> tuple[Tier, ...] | None:
        found = self.models.get(model)
        return found.tiers if found is not None else None

    def bands_said(self, model: str) -> str:
        """Why the price may differ by the hour, when the list prices other time bands ("": it does not)."""
        found = self.models.get(model)
        if found is None or not found.other_bands:
            return ""
        return (f"priced at the standard time band: {self.account}'s list also prices {model} in the band(s) "
                f"{', '.join(found.other_bands)}, without their hours (not applied)")


class ListedFact(NamedTuple):
    """A cap as the account's list gives it (the shape of a learned fact: `value`, `said()`)."""

    model: str
    fact: str
    value: int
    source: ModelList

    def said(self) -> str:
        return self.source.said()


class SeenBy:
    """The facts a body is built with for one account: what Qwen's refusals taught (models/learned.py) first —
    newer and about this very request's shape —, then the account's own list; everything else is the learned
    facts' own (their thinking and stream-only lessons)."""

    def __init__(self, learned: Any, listed: ModelList) -> None:
        self.learned, self.listed = learned, listed

    def get(self, model: str, fact: str) -> Any:
        taught = self.learned.get(model, fact) if self.learned is not None else None
        if taught is not None:
            return taught
        found = self.listed.models.get(model)
        value = None if found is None else found.max_output if fact == OUTPUT else \
            (found.max_input or found.context) if fact == INPUT else None
        return ListedFact(model, fact, value, self.listed) if value else None

    def model(self, model: str) -> ListedModel | None:
        """What the account's list says of `model` (None: it names no such model)."""
        return self.listed.models.get(model)

    def value(self, model: str, fact: str) -> int | None:
        got = self.get(model, fact)
        return got.value if got is not None else None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.learned, name)


# ---- as kept (models/listed_kept.py: the state folder, the team's table) ------------------------------------


def dumps(listed: ModelList) -> str:
    return json.dumps({"account": listed.account, "read_at": listed.read_at, "unpriced_why": listed.unpriced_why,
                       "models": [dataclasses.asdict(m) for m in listed.models.values()]})


def loads(text: str) -> ModelList | None:
    """The list as written by `dumps`; None when the text is not one (a damaged file is no list, never a fault)."""
    try:
        raw = json.loads(text)
        models = {}
        for m in raw["models"]:
            tiers, bands = m.pop("tiers", None), m.pop("other_bands", ())
            found = ListedModel(**m, tiers=tuple(Tier(**t) for t in tiers) if tiers else None,
                                other_bands=tuple(str(b) for b in bands))
            models[found.id] = found
        read_at = float(raw["read_at"])
        return ModelList(str(raw["account"]), read_at, models, str(raw.get("unpriced_why") or ""))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None

