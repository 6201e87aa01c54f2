"""How each Qwen model thinks, and which plan serves it, as the model catalogue (models/catalogue.toml, with its
sources) says: the table the request's knobs (knobs.py) read, one dict lookup per request; a model the catalogue
does not name by its family rules (`catalogue.by_rules`), else not known (`UNKNOWN`: the client's knobs go to
Qwen as sent). A largest budget whose sources are older than the model is not in the table (`Model.unsourced`).
docs/compatibility.md#thinking-per-model shows it (generated from the catalogue); the emulator plays the same
rows.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass

from ...models.catalogue import ROWS, SNAPSHOT, Model, Thinking, by_rules

HYBRID, ONLY, EFFORT, NONE = Thinking.HYBRID, Thinking.ONLY, Thinking.EFFORT, Thinking.NONE
QWEN38_EFFORTS = ROWS["qwen3.8-max"].efforts  # the effort list a 400 may teach for a model not in the catalogue


@dataclass(frozen=True, slots=True)
class Spec:
    """One model's thinking: its switch (None: not known), whether it thinks when told nothing, the largest
    `thinking_budget` it takes (None: not known, not checked), whether `enable_thinking: true` needs a budget,
    the `reasoning_effort` values it takes natively, and the plans that serve it."""

    kind: Thinking | None
    default_on: bool
    budget: int | None = None
    budget_required: bool = False
    efforts: tuple[str, ...] = ()
    plans: tuple[str, ...] = ()
    source: str = ""


def _spec(m: Model) -> Spec:
    budget = m.budget if "budget" not in m.unsourced else None
    return Spec(m.thinking, m.thinks, budget, m.budget_required, m.efforts, m.plans, m.sources)


TABLE: dict[str, Spec] = {m.id: _spec(m) for m in ROWS.values() if m.thinking is not None}
UNKNOWN = Spec(None, False, source="the client's knobs only")
_TAUGHT = {ONLY: Spec(ONLY, True, source="Qwen's 400"), EFFORT: Spec(EFFORT, True, efforts=QWEN38_EFFORTS,
                                                                     source="Qwen's 400")}


def spec(model: str, learned: Mapping[str, Thinking] | None = None) -> Spec:
    """The model's thinking: the table's, unless a 400 taught otherwise (`learned`, models/learned.py); for a
    model the table does not know, its family's, else its family rules', else UNKNOWN."""
    if learned and model in learned:
        return _TAUGHT[learned[model]]
    found = TABLE.get(model)
    if found is not None:
        return found
    family = TABLE.get(SNAPSHOT.sub("", model))
    return family if family is not None else _by_rules(model)


@functools.lru_cache(maxsize=256)  # asked per request about the few models a gateway serves
def _by_rules(model: str) -> Spec:
    row = by_rules(model)
    return _spec(row) if row.thinking is not None else UNKNOWN


def with_budget(found: Spec, most: int) -> Spec:
    """The spec with the largest budget Qwen's own refusal named (learned: it wins over the catalogue's)."""
    return found if found.budget == most else dataclasses.replace(found, budget=most)
