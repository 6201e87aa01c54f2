"""How each Qwen model thinks, and which plan serves it, as the model catalogue (models/catalogue.toml, with its
sources) says: the table the request's knobs (knobs.py) read, one dict lookup per request.
docs/compatibility.md#thinking-per-model shows it (generated from the catalogue); the emulator plays the same
rows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ...models.catalogue import ROWS, SNAPSHOT, Thinking

HYBRID, ONLY, EFFORT, NONE = Thinking.HYBRID, Thinking.ONLY, Thinking.EFFORT, Thinking.NONE
QWEN38_EFFORTS = ROWS["qwen3.8-max"].efforts  # the effort list a 400 may teach for a model not in the catalogue


@dataclass(frozen=True, slots=True)
class Spec:
    """One model's thinking: its switch, whether it thinks when told nothing, the largest `thinking_budget` it
    takes (None: not documented, not checked), whether `enable_thinking: true` needs a budget, the
    `reasoning_effort` values it takes natively, and the plans that serve it."""

    kind: Thinking
    default_on: bool
    budget: int | None = None
    budget_required: bool = False
    efforts: tuple[str, ...] = ()
    plans: tuple[str, ...] = ()
    source: str = ""


TABLE: dict[str, Spec] = {
    m.id: Spec(m.thinking, m.thinks, m.budget, m.budget_required, m.efforts, m.plans, m.sources)
    for m in ROWS.values() if m.thinking is not None
}

# A model the table does not name: a dated or -latest snapshot reads as its family; then by its name's shape.
_LATER_QWEN = re.compile(r"^qwen(?:3\.[5-9]|[4-9])")  # Qwen 3.5 and later: on by default
UNKNOWN = Spec(HYBRID, False, source="the client's knobs only")
_BY_NAME = {ONLY: Spec(ONLY, True, source="its name, or a 400"), NONE: Spec(NONE, False, source="its name"),
            EFFORT: Spec(EFFORT, True, efforts=QWEN38_EFFORTS, source="its name, or a 400"),
            HYBRID: Spec(HYBRID, True, source="its name")}


def spec(model: str, learned: Mapping[str, Thinking] | None = None) -> Spec:
    """The model's thinking: the table's, unless a 400 taught otherwise (`learned`, retry.py); for a model the
    table does not know, its family's, else what its name says (thinking-only, effort-native, Qwen 3.5+)."""
    if learned and model in learned:
        return _BY_NAME[learned[model]]
    found = TABLE.get(model)
    if found is not None:
        return found
    family = TABLE.get(SNAPSHOT.sub("", model))
    if family is not None:
        return family
    if model.startswith(("qwq", "qvq")) or "-thinking" in model:
        return _BY_NAME[ONLY]
    if model.startswith("qwen3.8-max"):
        return _BY_NAME[EFFORT]
    if "-instruct" in model or "-coder" in model:
        return _BY_NAME[NONE]
    return _BY_NAME[HYBRID] if _LATER_QWEN.match(model) else UNKNOWN
