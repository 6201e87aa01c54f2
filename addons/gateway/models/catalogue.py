"""The model catalogue: every fact the gateway knows about a Qwen model, read once from models/catalogue.toml
(each row with its sources). Limits, thinking, image routing, web search, prices, /v1/models and the web
accounts' fallback list all read it; no other module holds a table of model facts (tests/repo/test_catalogue.py).

A model the catalogue does not name is looked up as its family (a dated or `-latest` snapshot: `qwen3.6-plus-
2026-04-02` reads as `qwen3.6-plus`); else it is unknown, and nothing is invented for it.
"""

from __future__ import annotations

import enum
import functools
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

PATH = Path(__file__).with_name("catalogue.toml")


class Thinking(enum.StrEnum):
    """How a model's thinking is switched."""

    HYBRID = "hybrid"  # enable_thinking true/false (+ thinking_budget)
    ONLY = "only"  # always thinks: refuses enable_thinking false
    EFFORT = "effort"  # takes reasoning_effort natively; refuses it together with thinking_budget
    NONE = "none"  # does not think: no knob means anything to it


# Plans, as the rows name them (docs/compatibility.md): pay-as-you-go by region, Coding Plan, Token Plan, OAuth.
PAYG_INTL, PAYG_CN, PAYG_US, CODING, TOKEN, OAUTH = "payg-intl", "payg-cn", "payg-us", "coding", "token", "oauth"
PLANS = (PAYG_INTL, PAYG_CN, PAYG_US, CODING, TOKEN, OAUTH)
CHAT, EMBEDDING = "chat", "embedding"

# (prompt tokens up to, input, output, cached input, output in thinking mode): USD per million tokens
Tier = tuple[int | None, float, float, float | None, float | None]


@dataclass(frozen=True, slots=True)
class Model:
    id: str
    sources: str
    family: str | None = None
    kind: str = CHAT
    context: int | None = None
    input: int | None = None
    output: int | None = None
    shares_output: bool = False
    thinking: Thinking | None = None  # None: not known
    thinks: bool = False
    budget: int | None = None
    budget_required: bool = False
    efforts: tuple[str, ...] = ()
    preserve_thinking: bool = False
    vision: bool = False
    video: bool = False
    search: bool = False
    stream_only: bool = False
    web: bool = False
    plans: tuple[str, ...] = ()
    released: str | None = None
    retires: str | None = None
    dimensions: tuple[int, ...] = ()
    # what Model Studio serves it on besides chat (the emulator plays them; qwen_responses_native reads the first two)
    responses: bool = False  # its Responses API
    session_cache: bool = False  # the Responses API's session cache
    batch: bool = False  # its Batch API (half price)
    prices: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))  # billing -> (Tier, ...)


_FIELDS = set(Model.__dataclass_fields__) - {"id", "prices"} | {"price"}


def _tier(t: dict) -> Tier:
    return (t.get("upto"), float(t["input"]), float(t["output"]), t.get("cached"), t.get("thinking_output"))


def _row(model_id: str, raw: dict, rows: dict) -> Model:
    unknown = set(raw) - _FIELDS
    if unknown:
        raise ValueError(f"models/catalogue.toml: {model_id} has unknown fields {sorted(unknown)}")
    own = dict(raw)
    family = own.get("family")
    base: dict = {}
    if family is not None:
        parent = rows.get(family)
        if parent is None:
            raise ValueError(f"models/catalogue.toml: {model_id}'s family {family} is not a row above it")
        base = {k: getattr(parent, k) for k in _FIELDS - {"price", "family", "sources", "released", "retires"}}
        base["prices"] = parent.prices
    price = own.pop("price", None)
    if price is not None:
        own["prices"] = MappingProxyType({b: tuple(map(_tier, tiers)) for b, tiers in price.items()})
    for key in ("efforts", "plans", "dimensions"):
        if key in own:
            own[key] = tuple(own[key])
    if "thinking" in own:
        own["thinking"] = Thinking(own["thinking"])
    bad = set(own.get("plans", ())) - set(PLANS)
    if bad:
        raise ValueError(f"models/catalogue.toml: {model_id} names unknown plans {sorted(bad)}")
    return Model(id=model_id, **{**base, **own})


def load(path: Path = PATH) -> tuple[dict[str, Model], dict[str, str], str]:
    """(rows by id, sources by letter, the date the sources were read)."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    rows: dict[str, Model] = {}
    for model_id, raw in data["models"].items():
        rows[model_id] = _row(model_id, raw, rows)
    sources = dict(data["sources"])
    for m in rows.values():
        missing = {s.strip() for s in m.sources.split(",")} - set(sources)
        if missing:
            raise ValueError(f"models/catalogue.toml: {m.id} cites unknown sources {sorted(missing)}")
    return rows, sources, data["read"]


_rows, _sources, READ = load()


def _batch_rate(path: Path = PATH) -> tuple[float, str]:
    """(the share of the real-time price a batch's results are billed at, its sources)."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    rate, cited = float(data["batch_rate"]), str(data["batch_rate_sources"])
    if not 0 < rate <= 1 or cited not in _sources:
        raise ValueError("models/catalogue.toml: batch_rate is a share in (0, 1] citing a known source")
    return rate, cited


BATCH_RATE, BATCH_RATE_SOURCES = _batch_rate()
ROWS: MappingProxyType[str, Model] = MappingProxyType(_rows)
SOURCES: MappingProxyType[str, str] = MappingProxyType(_sources)

# A dated or -latest snapshot of a family: qwen3.6-plus-2026-04-02, qwen-plus-0919, qwen-max-latest
SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4}|latest)$")


@functools.lru_cache(maxsize=512)  # asked per request about the few models a gateway serves
def find(model: str) -> Model | None:
    """The model's row, or its family's for a snapshot the catalogue does not name; None: not known."""
    row = ROWS.get(model)
    if row is None and SNAPSHOT.search(model):
        row = ROWS.get(SNAPSHOT.sub("", model))
    return row


def chat_models(plans: set[str] | None = None) -> list[str]:
    """The chat models served by any of `plans` (all when None), in the catalogue's order."""
    return [m.id for m in ROWS.values()
            if m.kind == CHAT and (plans is None or plans.intersection(m.plans))]


def embedding_models(plans: set[str] | None = None) -> list[str]:
    return [m.id for m in ROWS.values()
            if m.kind == EMBEDDING and (plans is None or plans.intersection(m.plans))]
