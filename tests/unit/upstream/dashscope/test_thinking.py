"""The thinking table (upstream/dashscope/thinking.py) as the model catalogue says, and the emulator playing the same
rows (the doc's table is generated: tests/repo/test_catalogue.py)."""

from __future__ import annotations

import importlib.util

from helpers.procs import ROOT
from qwen_gateway.models.catalogue import ROWS
from qwen_gateway.models.catalogue import Thinking
from qwen_gateway.models.model_map import QWEN_MODELS
from qwen_gateway.upstream.dashscope import thinking

_spec = importlib.util.spec_from_file_location("emulated_catalogue", ROOT / "scripts" / "emulator" / "catalogue.py")
assert _spec is not None and _spec.loader is not None
emulated = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(emulated)  # the emulator's loader alone (tomllib only: it imports nothing of the gateway)

# The facts the emulator plays, as the gateway's loader holds them (absent from a row: the dataclass's default).
PLAYED = ("kind", "output", "shares_output", "thinking", "thinks", "budget", "budget_required", "efforts", "vision",
          "stream_only", "search", "dimensions")


def test_the_emulator_plays_the_catalogues_rows_and_holds_no_table_of_its_own():
    fields = type(ROWS["qwen4-max"]).__dataclass_fields__
    assert list(emulated.MODELS) == list(ROWS)
    for model, m in ROWS.items():
        row = emulated.MODELS[model]
        played = {f: tuple(v) if isinstance(v := row.get(f, fields[f].default), list) else v for f in PLAYED}
        assert played == {f: getattr(m, f) for f in PLAYED}, model
    for name in ("thinking.py", "search.py", "rules.py", "chat.py"):  # the tables that were: derived now
        source = (ROOT / "scripts" / "emulator" / name).read_text()
        assert not [m for m in ROWS if f'"{m}"' in source], name


def test_every_chat_model_of_the_catalogue_with_a_switch_is_in_the_table():
    assert set(thinking.TABLE) == {m for m in QWEN_MODELS if ROWS[m].thinking is not None}
    assert thinking.TABLE["qwen4-max"].kind is Thinking.EFFORT  # the catalogue's, not guessed from its name
    assert thinking.TABLE["qwen4-max"].efforts[-2:] == ("xhigh", "max")


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
