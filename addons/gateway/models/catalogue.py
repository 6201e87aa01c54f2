"""The model catalogue: every fact the gateway knows about a Qwen model, read once from models/catalogue.toml
(each row with its sources, each source with its date). Limits, thinking, image routing, web search, prices,
/v1/models and the web accounts' fallback list all read it; no other module holds a table of model facts
(tests/repo/test_catalogue.py).

A number a request is held to (output cap, longest prompt, window, thinking budget) counts only when a source
dated on or after the model's release gives it: one that does not is in `Model.unsourced`, shown in the docs
and never applied. A model the catalogue does not name is looked up as its family (a dated or `-latest`
snapshot: `qwen3.6-plus-2026-04-02` reads as `qwen3.6-plus`), then by the family rules its name matches
(`by_rules`); else it is unknown, and nothing is invented for it.
"""

from __future__ import annotations

import datetime
import enum
import functools
import re
import time
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

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
# (… as above, explicit-cache reads, 5-minute writes, 1-hour writes: None where the row gives none)
Tier = tuple[int | None, float, float, float | None, float | None, float | None, float | None, float | None]
# The numbers a request is held to: each names its own sources (`cite`) and counts only if one is dated on or
# after the model's release.
HELD_TO = ("output", "input", "context", "budget")


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
    partial: bool = False  # Model Studio's partial mode: goes on from an answer's prefix (non-thinking mode)
    web: bool = False
    plans: tuple[str, ...] = ()
    released: str | None = None
    retires: str | None = None  # the last day Model Studio serves it (YYYY-MM-DD); its source: `cite["retires"]`
    successor: str | None = None  # the one model its source names in its place, or:
    successors: tuple[str, ...] = ()  # examples from what its source names (`replaced_by`): a series, not a model
    replaced_by: str | None = None  # "the Qwen3.6 and Qwen3.7 series": its source's own words
    cite: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))  # fact -> its sources
    unsourced: frozenset[str] = frozenset()  # facts of HELD_TO whose sources are all older than the model
    dimensions: tuple[int, ...] = ()
    # what Model Studio serves it on besides chat (the emulator plays them; qwen_responses_native reads the first two)
    responses: bool = False  # its Responses API
    session_cache: bool = False  # the Responses API's session cache
    batch: bool = False  # its Batch API (half price)
    cache_ttls: tuple[str, ...] = ()  # the explicit cache's lifetimes a request may choose (none: 5 minutes)
    prices: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))  # billing -> (Tier, ...)


_FIELDS = set(Model.__dataclass_fields__) - {"id", "prices", "unsourced"} | {"price"}
_OWN = {"price", "family", "sources", "released", "retires", "successor", "successors", "replaced_by",
        "cite"}  # never inherited
# What a row's `cite` names sources for: the numbers it is held to and its retirement.
CITED = (*HELD_TO, "retires")


def _tier(t: dict) -> Tier:
    return (t.get("upto"), float(t["input"]), float(t["output"]), t.get("cached"), t.get("thinking_output"),
            t.get("cache_read"), t.get("cache_write"), t.get("cache_write_1h"))


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
        base = {k: getattr(parent, k) for k in _FIELDS - _OWN}
        base["prices"] = parent.prices
        own["cite"] = {**parent.cite, **own.get("cite", {})}  # an inherited number keeps its sources
    price = own.pop("price", None)
    if price is not None:
        own["prices"] = MappingProxyType({b: tuple(map(_tier, tiers)) for b, tiers in price.items()})
    for key in ("efforts", "plans", "dimensions", "cache_ttls", "successors"):
        if key in own:
            own[key] = tuple(own[key])
    if "thinking" in own:
        own["thinking"] = Thinking(own["thinking"])
    bad = set(own.get("plans", ())) - set(PLANS)
    if bad:
        raise ValueError(f"models/catalogue.toml: {model_id} names unknown plans {sorted(bad)}")
    own["cite"] = MappingProxyType({k: str(v) for k, v in own.get("cite", {}).items()})
    return Model(id=model_id, **{**base, **own})


def days(date: str) -> tuple[datetime.date, datetime.date]:
    """The first and last day a catalogue date (YYYY, YYYY-MM or YYYY-MM-DD) may mean."""
    parts = [int(p) for p in date.split("-")]
    if not 1 <= len(parts) <= 3 or not re.fullmatch(r"\d{4}(?:-\d{2}){0,2}", date):
        raise ValueError(f"models/catalogue.toml: {date!r} is not YYYY, YYYY-MM or YYYY-MM-DD")
    year, month, day = (parts + [0, 0])[:3]
    first = datetime.date(year, month or 1, day or 1)
    if day:
        return first, first
    if month:
        following = datetime.date(year + month // 12, month % 12 + 1, 1)
        return first, following - datetime.timedelta(days=1)
    return first, datetime.date(year, 12, 31)


def letters(cited: str) -> list[str]:
    return [s.strip() for s in cited.split(",") if s.strip()]


def _checked(m: Model, sources: dict[str, dict]) -> Model:
    """The row with its unsourced numbers marked, after checking what it cites exists."""
    missing = set(letters(m.sources)) - set(sources)
    for fact, cited in m.cite.items():
        if fact not in CITED:
            raise ValueError(f"models/catalogue.toml: {m.id} cites sources for {fact}, which is not one of {CITED}")
        missing |= set(letters(cited)) - set(sources)
    if missing:
        raise ValueError(f"models/catalogue.toml: {m.id} cites unknown sources {sorted(missing)}")
    named = (m.successor is not None) + bool(m.successors)
    if (m.retires is None) != (named == 0) or named > 1 or (m.replaced_by is None) != (not m.successors) \
            or (m.retires is not None and not m.cite.get("retires")):
        raise ValueError(f"models/catalogue.toml: {m.id}: a retirement names its sources (cite.retires) and either "
                         "its `successor` or the series its source names (`replaced_by`) with `successors` from it")
    if m.released is None:
        return m
    released = days(m.released)[1]  # the latest day it may have been released
    stale = frozenset(fact for fact in HELD_TO if getattr(m, fact) is not None and fact in m.cite
                      and all(days(sources[s]["date"])[0] < released for s in letters(m.cite[fact])))
    return replace(m, unsourced=stale) if stale else m


def load(path: Path = PATH) -> tuple[dict[str, Model], dict[str, dict], str, list[tuple[re.Pattern, Model]]]:
    """(rows by id, sources by letter ({date, text}), the date the sources were read, the family rules)."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    sources = {k: dict(v) for k, v in data["sources"].items()}
    for letter, source in sources.items():
        if set(source) != {"date", "text"}:
            raise ValueError(f"models/catalogue.toml: source {letter} is {{date, text}}")
        days(source["date"])
    rows: dict[str, Model] = {}
    for model_id, raw in data["models"].items():
        rows[model_id] = _row(model_id, raw, rows)
    for model_id, m in rows.items():
        rows[model_id] = _checked(m, sources)
        for successor in (m.successor,) * (m.successor is not None) + m.successors:
            if successor not in rows:
                raise ValueError(f"models/catalogue.toml: {model_id}'s successor {successor} is not a row")
            if (rows[successor].retires or "9999") <= str(m.retires):  # Qwen's own 404 suggests such names
                raise ValueError(f"models/catalogue.toml: {model_id}'s successor {successor} retires before it")
    rules = []
    for n, raw in enumerate(data.get("family_rules", ())):
        own = {k: v for k, v in raw.items() if k != "match"}
        rules.append((re.compile(raw["match"]), _checked(_row(f"family rule {n + 1}", own, rows), sources)))
    return rows, sources, data["read"], rules


_rows, _sources, READ, _rules = load()


def _batch_rate(path: Path = PATH) -> tuple[float, str]:
    """(the share of the real-time price a batch's results are billed at, its sources)."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    rate, cited = float(data["batch_rate"]), str(data["batch_rate_sources"])
    if not 0 < rate <= 1 or cited not in _sources:
        raise ValueError("models/catalogue.toml: batch_rate is a share in (0, 1] citing a known source")
    return rate, cited


BATCH_RATE, BATCH_RATE_SOURCES = _batch_rate()
ROWS: MappingProxyType[str, Model] = MappingProxyType(_rows)
SOURCES: MappingProxyType[str, str] = MappingProxyType({k: s["text"] for k, s in _sources.items()})
SOURCE_DATES: MappingProxyType[str, str] = MappingProxyType({k: s["date"] for k, s in _sources.items()})
FAMILY_RULES: tuple[tuple[re.Pattern, Model], ...] = tuple(_rules)

# A dated or -latest snapshot of a family: qwen3.6-plus-2026-04-02, qwen-plus-0919, qwen-max-latest
SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4}|latest)$")


@functools.lru_cache(maxsize=512)  # asked per request about the few models a gateway serves
def find(model: str) -> Model | None:
    """The model's row, or its family's for a snapshot the catalogue does not name; None: not known."""
    row = ROWS.get(model)
    if row is None and SNAPSHOT.search(model):
        row = ROWS.get(SNAPSHOT.sub("", model))
    return row


@functools.lru_cache(maxsize=512)
def by_rules(model: str) -> Model:
    """What the family rules say of a model the catalogue does not name: each fact from the first rule that
    matches and states it (a fact none states stays unknown: `thinking` None, flags false)."""
    facts: dict[str, Any] = {}
    cited: list[str] = []
    for pattern, rule in FAMILY_RULES:
        if not pattern.search(model):
            continue
        stated: dict[str, Any] = {"thinking": rule.thinking} if rule.thinking is not None else {}
        if rule.thinking is not None:
            stated.update(thinks=rule.thinks, efforts=rule.efforts, budget_required=rule.budget_required)
        stated.update({k: True for k in ("vision", "stream_only") if getattr(rule, k)})
        fresh = {k: v for k, v in stated.items() if k not in facts}
        if fresh:
            facts.update(fresh)
            cited.append(rule.sources)
    return Model(id=model, sources=", ".join(dict.fromkeys(cited)), **facts)


_today: list = ["", 0.0]  # the UTC date, and when it ends (time.time())


def today() -> str:
    """The UTC date (YYYY-MM-DD), worked out once a day: asked on every request."""
    now = time.time()
    if now >= _today[1]:
        day = time.gmtime(now)
        _today[0] = time.strftime("%Y-%m-%d", day)
        _today[1] = now - (day.tm_hour * 3600 + day.tm_min * 60 + day.tm_sec) + 86400
    return _today[0]


def retired(model: str, day: str | None = None) -> Model | None:
    """The model's row when its last day (`retires`) is past (UTC), else None: Model Studio no longer serves it."""
    row = find(model)
    if row is None or row.retires is None:
        return None
    return row if (day or today()) > row.retires else None


def retirement_message(model: str, row: Model) -> str:
    """What the gateway answers (404 model_not_found) for a model past its last day: the successor its source
    names, or the series (with examples from the catalogue); never a name from Qwen's own 404, which suggests
    models retired too."""
    said = f"The model `{model}` was retired: Model Studio served it until {row.retires}."
    if row.successor is not None:
        return f"{said} Use `{row.successor}` instead."
    return f"{said} Model Studio names {row.replaced_by} as replacements, e.g. " + \
        ", ".join(f"`{m}`" for m in row.successors) + "."


def chat_models(plans: set[str] | None = None) -> list[str]:
    """The chat models served by any of `plans` (all when None), in the catalogue's order."""
    return [m.id for m in ROWS.values()
            if m.kind == CHAT and (plans is None or plans.intersection(m.plans))]


def embedding_models(plans: set[str] | None = None) -> list[str]:
    return [m.id for m in ROWS.values()
            if m.kind == EMBEDDING and (plans is None or plans.intersection(m.plans))]
