"""observe/ledger_rows.py: a row as the databases take it — a lone surrogate or a NUL in any text column mended,
every other value as it is, and a row of plain text not looked at value by value."""

from __future__ import annotations

from qwen_gateway.observe import ledger_rows
from qwen_gateway.observe.ledger_rows import COLUMNS, row_of, values

from helpers.observe_testlib import exchange

NAMES = list(COLUMNS)


def test_a_surrogate_or_a_nul_in_any_text_column_is_mended_and_the_rest_kept():
    row = row_of(exchange())
    mended = {**row, "model": "gpt\ud83d", "error": "bad\x00name", "account": "été\udc80", "path": "/v1/ç"}
    [got] = values([mended], NAMES)
    by = dict(zip(NAMES, got))
    assert by["model"] == "gpt\ufffd" and by["error"] == "bad\ufffdname" and by["account"] == "été\ufffd"
    assert by["path"] == "/v1/ç"  # beyond ASCII and valid: as it is
    assert {k: v for k, v in by.items() if k not in ("model", "error", "account", "path")} == \
        {k: row.get(k) for k in NAMES if k not in ("model", "error", "account", "path")}
    assert "".join(v for v in got if isinstance(v, str)).encode("utf-8")  # storable: encodes


def test_a_row_of_plain_text_is_not_mended_value_by_value(monkeypatch):
    mended = []
    monkeypatch.setattr(ledger_rows, "_storable", lambda text: mended.append(text) or text)
    rows = [row_of(exchange()) for _ in range(3)]
    assert values(rows, NAMES) == [tuple(row.get(c) for c in NAMES) for row in rows]
    assert mended == []
    values([{**rows[0], "model": "gpt\x00"}], NAMES)
    assert "gpt\x00" in mended  # only the row that needs it


def test_a_turn_the_cache_doctor_saw_has_its_conversation_turn_and_miss():
    from qwen_gateway.cache_turn import CacheTurn
    row = row_of(exchange())
    assert (row["conversation"], row["cache_turn"], row["cache_miss"], row["miss_tokens"], row["miss_usd"]) == \
        (None, None, None, None, None)
    ex = exchange()
    ex.result.cache = CacheTurn("c0ffee", 3, 3400, 0, 0, "tool_order", 3200, 0.00256)
    row = row_of(ex)
    assert (row["conversation"], row["cache_turn"], row["cache_miss"], row["miss_tokens"], row["miss_usd"]) == \
        ("c0ffee", 3, "tool_order", 3200, 0.00256)
    ex.result.cache = CacheTurn("c0ffee", 4, 3600, 3300, 0)
    assert (row_of(ex)["cache_miss"], row_of(ex)["miss_tokens"]) == (None, 0)


def test_a_batch_of_plain_text_is_looked_at_once_not_row_by_row(monkeypatch):
    """The batch's text is checked in one pass (C: itemgetter, join); rows are looked at one by one only when
    some text in the batch is beyond ASCII or holds a NUL, and a row without some column gets None there."""
    looked = []
    real = ledger_rows._mended
    monkeypatch.setattr(ledger_rows, "_mended", lambda t: looked.append(t) or real(t))
    rows = [row_of(exchange()) for _ in range(4)]
    assert values(rows, NAMES) == [tuple(row.get(c) for c in NAMES) for row in rows]
    assert looked == []
    partial = {"xid": "x1", "model": "m"}
    assert values([partial], NAMES) == [tuple(partial.get(c) for c in NAMES)]
    got = values([*rows, {**rows[0], "model": "gpt\udc80"}], NAMES)
    assert len(looked) == 5 and dict(zip(NAMES, got[-1]))["model"] == "gpt\ufffd" and got[:4] == values(rows, NAMES)
    assert dict(zip(NAMES, values([{**rows[0], "model": 7, "error": "a\x00"}], NAMES)[0]))["error"] == "a\ufffd"
