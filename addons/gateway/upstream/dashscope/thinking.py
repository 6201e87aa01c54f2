"""How each Qwen model thinks, and which plan serves it: the table the request's knobs (knobs.py) read,
one dict lookup per request. docs/compatibility.md#thinking-per-model shows it with its sources; the emulator
(scripts/emulator/thinking.py) plays the same models; tests/unit/upstream/dashscope/test_thinking.py keeps the three in step.

Read 2026-11-24. Sources, cited per row by their letter:
  A  Model Studio, "Deep thinking" (help.aliyun.com/zh/model-studio/deep-thinking; alibabacloud.com/help/en/
     model-studio/deep-thinking): hybrid vs thinking-only; Qwen3 commercial models (qwen-plus, -flash, -turbo,
     qwen3-max-preview) "hybrid, thinking off by default"; open-source Qwen3 on by default
  B  Model Studio's API reference as quoted in langgenius/dify-official-plugins#2628 (2026-02-27): "qwen3.5-plus
     ... thinking on by default"; Tencent TokenHub's Qwen guide (2026-05-28): qwen3.5-plus, -flash on by default
  C  Model Studio, "Text generation models" table as cited by anomalyco/models.dev#2364-#2366 (2026-06-13): the
     largest thinking_budget per model (80K Qwen3.5/3.6-plus, 128K Qwen3.6-flash/-max-preview, 256K Qwen3.7)
  D  Qwen3.8-Max: qwen-code PRs #8472/#8488 (2026-08), opencode#41531 ("'reasoning_effort' and 'thinking_budget'
     cannot be set simultaneously"), GCMP#384 (the 400 listing none/minimal/low/medium/high/xhigh), APIYI's
     Qwen3.8-Max reference (thinks by default at xhigh; reasoning_effort "none" turns it off; 262K budget)
  E  Model Studio, "Claude Code" (alibabacloud.com/help/en/model-studio/claude-code, 2026-02): Qwen-Coder "does
     not support thinking mode"; of qwen3-max, only -2026-01-23 and -preview think; QwenLM/qwen-code#1647
  F  DashScope's refusals: "The value of the enable_thinking parameter is restricted to True." (QuantumNous/
     new-api#1519, TokenRhythm/opensquilla#794); a budget required (QwenLM/Qwen-Agent#941, qwen3.5-27b) or above
     the most ("... not greater than 38912", CherryHQ/cherry-studio#7263)
  G  Plans: Model Studio "Coding Plan" (help.aliyun.com/zh/model-studio/coding-plan) as listed by models.dev#1023,
     #2061 and qwen-code#5054; "Token Plan overview" as cited by models.dev#2260; qwen-code's OAuth models
     (coder-model is Qwen 3.6 Plus; the portal closed, /work/shared/docs/dashscope-rules.md)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ...model_map import Thinking

HYBRID, ONLY, EFFORT, NONE = Thinking.HYBRID, Thinking.ONLY, Thinking.EFFORT, Thinking.NONE
# Plans (docs/compatibility.md's names): pay-as-you-go international and China, Coding Plan, Token Plan, OAuth.
INTL, CN, CODING, TOKEN, OAUTH = "payg-intl", "payg-cn", "coding", "token", "oauth"
PAYG = (INTL, CN)
QWEN38_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")


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
    plans: tuple[str, ...] = PAYG
    source: str = ""


def _on(budget: int | None, plans: tuple[str, ...], source: str, required: bool = False) -> Spec:
    return Spec(HYBRID, True, budget, required, (), plans, source)


def _off(budget: int | None, plans: tuple[str, ...], source: str) -> Spec:
    return Spec(HYBRID, False, budget, False, (), plans, source)


def _none(plans: tuple[str, ...], source: str) -> Spec:
    return Spec(NONE, False, None, False, (), plans, source)


def _only(budget: int | None, plans: tuple[str, ...], source: str) -> Spec:
    return Spec(ONLY, True, budget, False, (), plans, source)


TABLE: dict[str, Spec] = {
    # Qwen 3.8 (2026-08-03): thinks by default at xhigh; its switch is reasoning_effort
    "qwen3.8-max": Spec(EFFORT, True, 262_144, False, QWEN38_EFFORTS, PAYG, "D"),
    "qwen3.8-flash": _on(None, PAYG, "A"),
    # Qwen 3.5 to 3.7: hybrid, on by default ("Qwen 3.5 and later think by default")
    "qwen3.7-max": _on(262_144, (*PAYG, TOKEN), "A, C, G"),
    "qwen3.7-plus": _on(262_144, (*PAYG, CODING, TOKEN), "A, C, G"),
    "qwen3.7-flash": _on(None, PAYG, "A"),
    "qwen3.6-max-preview": _on(131_072, PAYG, "A, C"),
    "qwen3.6-plus": _on(81_920, (*PAYG, CODING, TOKEN), "A, C, G"),
    "qwen3.6-flash": _on(131_072, (*PAYG, TOKEN), "A, C, G"),
    "qwen3.5-plus": _on(81_920, (*PAYG, CODING), "B, C, G"),
    "qwen3.5-flash": _on(81_920, PAYG, "B, C"),
    "qwen3.5-397b-a17b": _on(81_920, PAYG, "A, C"),
    "qwen3.5-122b-a10b": _on(81_920, (INTL,), "A, C"),
    "qwen3.5-35b-a3b": _on(81_920, (INTL,), "A, C"),
    "qwen3.5-27b": _on(81_920, PAYG, "C, F", required=True),
    # Qwen3 commercial: hybrid, off by default
    "qwen3-max-2026-01-23": _off(None, (*PAYG, CODING), "E, G"),
    "qwen3-max-preview": _off(None, PAYG, "A, E"),
    "qwen-plus": _off(81_920, PAYG, "A, C"),
    "qwen-flash": _off(81_920, PAYG, "A, C"),
    "qwen-turbo": _off(38_912, PAYG, "A, C, F"),
    "qwen3-vl-plus": _off(81_920, PAYG, "B, C"),
    # Qwen3 open source: hybrid, on by default
    "qwen3-235b-a22b": _on(38_912, PAYG, "A, C"),
    "qwen3-32b": _on(38_912, PAYG, "A, C"),
    "qwen3-14b": _on(38_912, PAYG, "A, C"),
    "qwen3-8b": _on(38_912, PAYG, "A, C"),
    # thinking-only
    "qwq-plus": _only(None, PAYG, "A, F"),
    "qvq-max": _only(None, PAYG, "A"),
    "qwen3-235b-a22b-thinking-2507": _only(81_920, PAYG, "A, C"),
    "qwen3-30b-a3b-thinking-2507": _only(None, PAYG, "A"),
    "qwen3-next-80b-a3b-thinking": _only(None, PAYG, "A"),
    # no thinking
    "qwen3-coder-plus": _none((*PAYG, CODING), "E, G"),
    "qwen3-coder-flash": _none(PAYG, "E"),
    "qwen3-coder-next": _none((*PAYG, CODING), "E, G"),
    "qwen3-max": _none(PAYG, "E"),
    "qwen-max": _none(PAYG, "E"),
    "qwen-vl-max": _none(PAYG, "A"),
    "qwen-vl-plus": _none(PAYG, "A"),
    "qwen3-235b-a22b-instruct-2507": _none(PAYG, "A"),
    # the OAuth portal's own names (closed; kept for logins made before)
    "coder-model": _on(None, (OAUTH,), "G"),
    "vision-model": _off(None, (OAUTH,), "G"),
}

# A model the table does not name: a dated or -latest snapshot reads as its family; then by its name's shape.
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4}|latest)$")
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
    family = TABLE.get(_SNAPSHOT.sub("", model))
    if family is not None:
        return family
    if model.startswith(("qwq", "qvq")) or "-thinking" in model:
        return _BY_NAME[ONLY]
    if model.startswith("qwen3.8-max"):
        return _BY_NAME[EFFORT]
    if "-instruct" in model or "-coder" in model:
        return _BY_NAME[NONE]
    return _BY_NAME[HYBRID] if _LATER_QWEN.match(model) else UNKNOWN
