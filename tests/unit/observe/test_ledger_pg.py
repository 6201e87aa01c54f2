"""The ledger in a shared PostgreSQL database (observe/ledger_pg.py), its pure parts: the schema made from the
ledger's columns, PostgreSQL's numbers as the report's. On a real database: tests/e2e/test_e2e_shared_state.py."""

from __future__ import annotations

from decimal import Decimal

from qwen_gateway.observe.ledger_pg import PG_STEPS, _plain
from qwen_gateway.observe.ledger_rows import COLUMNS


def test_the_table_has_every_ledger_column_in_postgresqls_types():
    create = PG_STEPS[0]
    assert create.startswith("CREATE TABLE usage (")
    types = {"REAL": "DOUBLE PRECISION", "INTEGER": "BIGINT", "TEXT": "TEXT"}
    for name, kind in COLUMNS.items():
        assert f"{name} {types[kind]}" in create, name


def test_sums_come_back_as_ints_or_floats_never_decimals():
    assert _plain(Decimal("12")) == 12 and type(_plain(Decimal("12"))) is int  # SUM of integers is numeric
    assert _plain(Decimal("0.25")) == 0.25 and type(_plain(Decimal("0.25"))) is float
    assert _plain("text") == "text" and _plain(None) is None and _plain(3.5) == 3.5
