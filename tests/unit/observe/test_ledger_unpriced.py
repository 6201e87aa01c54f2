"""The usage ledger's unpriced rows (issue 59): an answer nothing prices is written with no cost and the unit
`unpriced` (the marker qwen-usage reads), one priced by qwen_unpriced_as with the model whose price counted it
(`priced_as`); a ledger an older gateway wrote gains the column, and its answered rows that no price counted —
written as a cost of nothing before — are marked unpriced, in the SQLite file and the shared database alike."""

from __future__ import annotations

import sqlite3

from qwen_gateway.observe.ledger import COLUMNS, Ledger, SharedLedger, row_of
from qwen_gateway.observe.ledger_rows import UNPRICED_BEFORE

from helpers.observe_testlib import exchange
from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)


def charged(unit: str, cost: float | None = None, priced_as: str = ""):
    ex = exchange(upstream_model="qwen3.7-flash", account="emu")
    ex.result.cost, ex.result.cost_unit, ex.result.priced_as = cost, unit, priced_as
    return ex


def test_an_unpriced_answer_has_no_cost_and_the_unpriced_unit():
    row = row_of(charged("unpriced"))
    assert (row["cost"], row["cost_unit"], row["priced_as"]) == (None, "unpriced", None)
    row = row_of(charged("USD", 0.0012, "qwen3-max"))
    assert (row["cost"], row["cost_unit"], row["priced_as"]) == (0.0012, "USD", "qwen3-max")


# rows an older gateway wrote: an answer no price counted (no cost, no unit), a priced one, a plan's, a refusal
OLD_ROWS = [("a", "emu", 200, 10, 2, None, None), ("b", "emu", 200, 10, 2, 0.5, "USD"),
            ("c", "emu", 200, 10, 2, 1.0, "requests"), ("d", None, 429, None, None, None, None),
            ("e", "emu", 502, None, None, None, None)]
OLD = "INSERT INTO usage (xid, account, status, prompt_tokens, completion_tokens, cost, cost_unit) VALUES "


def marked(led) -> list[tuple]:
    return led.query("SELECT xid, cost_unit, priced_as FROM usage ORDER BY xid")


EXPECTED = [("a", "unpriced", None), ("b", "USD", None), ("c", "requests", None), ("d", None, None), ("e", None, None)]


def test_an_older_sqlite_ledger_gains_priced_as_and_its_unpriced_rows_are_marked(tmp_path):
    path = tmp_path / "usage.sqlite3"
    db = sqlite3.connect(path)
    db.execute(f"CREATE TABLE usage ({', '.join(f'{c} {k}' for c, k in COLUMNS.items() if c != 'priced_as')})")
    db.executemany(OLD + "(?, ?, ?, ?, ?, ?, ?)", OLD_ROWS)
    db.commit()
    db.close()
    led = Ledger(path)
    assert marked(led) == EXPECTED
    led.add([row_of(charged("unpriced")) | {"xid": "f", "cost_unit": None}])  # as a row without a price is now
    led.close()
    led = Ledger(path)  # opened again: the marking was the migration's, once
    assert marked(led) == [*EXPECTED, ("f", None, None)]
    led.close()


def test_an_older_shared_ledger_gains_priced_as_and_its_unpriced_rows_are_marked(pg_url):
    from qwen_gateway.storage.pg import Database
    from qwen_gateway.observe.ledger_pg import PG_STEPS

    db = Database(pg_url)
    db.migrate("usage", PG_STEPS[:PG_STEPS.index(UNPRICED_BEFORE) - 1])  # what the gateway before issue 59 left
    with db.connect() as conn:
        conn.execute("ALTER TABLE usage DROP COLUMN priced_as")  # its first step had no such column
        for row in OLD_ROWS:
            conn.execute(OLD + "(%s, %s, %s, %s, %s, %s, %s)", row)
        conn.commit()
    led = SharedLedger(Database(pg_url))
    assert marked(led) == EXPECTED
    led.close()
