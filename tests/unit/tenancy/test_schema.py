"""The named keys' tables and rows (tenancy/schema.py), run on SQLite in memory: spend added never
overwritten, a day's and a month's sums, records read back, the notes table."""

from __future__ import annotations

import sqlite3

import pytest

from qwen_gateway.tenancy.ring import KeyRecord
from qwen_gateway.tenancy.schema import (COPY_OF, KEY_COLUMNS, MOVED_TO, PG_STEPS, SQLITE_SCHEMA, Delta,
                                                     Spent, add_spend_sql, read_note, record_of, spend_query,
                                                     spent_of, write_note, add_columns)


@pytest.fixture
def conn():
    c = sqlite3.connect(":memory:")
    c.executescript(SQLITE_SCHEMA)
    add_columns(c)
    yield c
    c.close()


def add(conn, name, day, delta: Delta) -> None:
    conn.execute(add_spend_sql("MAX"), (name, day, *delta.values()))


def spend(conn, today, name=None) -> dict[str, Spent]:
    sql, args = spend_query(today, name)
    return {row[0]: spent_of(row) for row in conn.execute(sql, args)}


def test_gateways_add_to_a_days_spend_and_the_latest_use_wins(conn):
    add(conn, "k", "2026-05-10", Delta(requests=1, tokens=100, usd=0.5, last_used=50.0))
    add(conn, "k", "2026-05-10", Delta(requests=2, refused=1, tokens=30, plan_requests=2, plan_tokens=30,
                                       last_used=40.0))
    assert conn.execute("SELECT requests, refused, tokens, usd, plan_requests, plan_tokens, last_used FROM key_day"
                        ).fetchall() == [(3, 1, 130, 0.5, 2, 30, 50.0)]


def test_the_day_counts_today_and_the_month_counts_since_the_first(conn):
    add(conn, "k", "2026-04-30", Delta(requests=9, tokens=900, usd=9.0))  # last month: nothing of it
    add(conn, "k", "2026-05-01", Delta(requests=1, tokens=10, usd=1.0, plan_requests=1, plan_tokens=10))
    add(conn, "k", "2026-05-10", Delta(requests=2, refused=1, tokens=20, usd=0.25, last_used=7.0))
    add(conn, "j", "2026-05-02", Delta(requests=1, tokens=5))
    assert spend(conn, "2026-05-10") == {
        "k": Spent(tokens_today=20, requests_today=2, refused_today=1, usd_month=1.25, plan_requests_month=1,
                   plan_tokens_month=10, last_used=7.0),
        "j": Spent(usd_month=0.0)}
    assert list(spend(conn, "2026-05-10", "j")) == ["j"]


def test_a_record_reads_back_as_the_ring_holds_it(conn):
    conn.execute("INSERT INTO client_keys (name, digest, rpm, tpm, daily_tokens, monthly_usd, created, changed, "
                 "revoked) VALUES ('a', 'ab01', 5, 0, 0, 2.5, 1, 1, NULL), ('b', 'ff', 0, 0, 0, 0, 1, 1, 3)")
    rows = conn.execute(f"SELECT {KEY_COLUMNS} FROM client_keys ORDER BY name").fetchall()
    assert [record_of(r) for r in rows] == [KeyRecord("a", b"\xab\x01", rpm=5, monthly_usd=2.5),
                                            KeyRecord("b", b"\xff", revoked=True)]


def test_notes_are_set_replaced_and_removed(conn):
    assert read_note(conn, MOVED_TO) is None  # a file of before: no notes table
    write_note(conn, COPY_OF, "postgresql://db/a")
    write_note(conn, COPY_OF, "postgresql://db/b")
    value, at = read_note(conn, COPY_OF)
    assert value == "postgresql://db/b" and at > 0
    write_note(conn, COPY_OF, None)
    assert read_note(conn, COPY_OF) is None


def test_both_databases_get_the_same_tables_in_their_own_types():
    keys, days = (" ".join(step.split()) for step in PG_STEPS[:2])
    assert keys.startswith("CREATE TABLE client_keys (") and days.startswith("CREATE TABLE key_day (")
    assert "INTEGER" not in keys + days and "REAL" not in (keys + days).replace("DOUBLE PRECISION", "")
    lite = " ".join(SQLITE_SCHEMA.split()).replace("IF NOT EXISTS ", "").replace("INTEGER", "BIGINT")
    assert lite.replace("REAL", "DOUBLE PRECISION") == f"{keys}; {days};"


def test_requests_without_a_price_are_added_and_summed_for_the_month(conn):
    add(conn, "k", "2026-05-01", Delta(requests=2, unpriced=2))
    add(conn, "k", "2026-05-10", Delta(requests=1, unpriced=1, usd=0.5))
    add(conn, "k", "2026-05-10", Delta(requests=1, unpriced=1))
    assert spend(conn, "2026-05-10")["k"].unpriced_month == 4


def test_a_keys_file_of_before_gets_the_unpriced_column():
    """A key_day table written by an older gateway (no `unpriced`): the column is added, its days count 0."""
    c = sqlite3.connect(":memory:")
    c.executescript(SQLITE_SCHEMA)  # the tables as the first release made them
    c.execute("INSERT INTO key_day (name, day, requests, usd) VALUES ('k', '2026-05-10', 3, 0.25)")
    add_columns(c)
    add_columns(c)  # once is enough: a second open changes nothing
    assert spend(c, "2026-05-10")["k"] == Spent(requests_today=3, usd_month=0.25)
