"""The thinking table (upstream/dashscope/thinking.py) in step with docs/compatibility.md#thinking-per-model (every
row, its sources, the date they were read) and with the emulator's own copy (scripts/emulator/thinking.py), as
tests/repo/test_docs.py keeps the options table in step with the code."""

from __future__ import annotations

import importlib.util
import re

from helpers.procs import ROOT
from qwen_gateway.model_map import OUTPUT_CAPS, QWEN_MODELS, Thinking
from qwen_gateway.upstream.dashscope import thinking

_spec = importlib.util.spec_from_file_location("emulated_thinking", ROOT / "scripts" / "emulator" / "thinking.py")
assert _spec is not None and _spec.loader is not None
emulated = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(emulated)  # the emulator's table alone (it imports nothing of the emulator)

DOC = ROOT / "docs" / "compatibility.md"
SWITCH = {Thinking.HYBRID: "`enable_thinking`", Thinking.ONLY: "thinking-only", Thinking.EFFORT: "`reasoning_effort`",
          Thinking.NONE: "none"}


def row(model: str, s: thinking.Spec) -> str:
    """The doc's row for one model, as the table says it."""
    default = "–" if s.kind is Thinking.NONE else "thinks" if s.default_on else "does not think"
    budget = "–" if s.budget is None else f"{s.budget:,}" + (", required" if s.budget_required else "")
    efforts = ", ".join(s.efforts) or "–"
    return (f"| `{model}` | {SWITCH[s.kind]} | {default} | {budget} | {efforts} | {', '.join(s.plans)} | "
            f"{s.source} |")


def doc_section() -> str:
    text = DOC.read_text()
    start = text.index("## Thinking per model")
    return text[start:text.index("\n## ", start + 1)]


def test_the_doc_holds_the_table_row_for_row():
    table = doc_section().split("### The table", 1)[1]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert rows == [row(m, s) for m, s in thinking.TABLE.items()]


def test_the_doc_names_every_source_and_when_it_was_read():
    section = doc_section()
    read = re.search(r"Read (\d{4}-\d{2}-\d{2})", thinking.__doc__ or "")
    assert read and f"read {read.group(1)}" in section
    letters = {x.strip() for s in thinking.TABLE.values() for x in s.source.split(",")}
    for letter in sorted(letters):
        assert re.search(rf"^- \*\*{letter}\*\* ", section, re.M), f"source {letter} is not described in the doc"
        assert re.search(rf"^  {letter}  ", thinking.__doc__ or "", re.M), f"source {letter} is not in thinking.py"


def test_the_emulator_thinks_as_the_table_says():
    kinds = {emulated.HYBRID: Thinking.HYBRID, emulated.ONLY: Thinking.ONLY, emulated.EFFORT: Thinking.EFFORT,
             emulated.NONE: Thinking.NONE}
    for model, (mode, default, budget, required, efforts) in emulated.MODELS.items():
        s = thinking.TABLE[model]
        assert (kinds[mode], default, budget, required, efforts) == (
            s.kind, s.default_on, s.budget, s.budget_required, s.efforts), model


def test_every_model_the_gateway_names_is_in_the_table():
    for model in (*QWEN_MODELS, *OUTPUT_CAPS):
        assert model in thinking.TABLE, model


def test_a_lookup_is_one_dict_read_for_a_known_model():
    class Counting(dict):
        reads = 0

        def get(self, key, default=None):
            Counting.reads += 1
            return super().get(key, default)

    table, thinking.TABLE = thinking.TABLE, Counting(thinking.TABLE)
    try:
        assert thinking.spec("qwen3.6-plus").default_on and Counting.reads == 1
        assert thinking.spec("qwen3.6-plus-2026-04-02") is table["qwen3.6-plus"] and Counting.reads == 3
    finally:
        thinking.TABLE = table
