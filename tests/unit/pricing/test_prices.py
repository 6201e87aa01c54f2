"""Cache money (issue 39, item 2), piece by piece: what a request cost with Model Studio's cache prices
(explicit creation 125% of the input price, explicit hits 10%, implicit hits the table's `cached`, 20% of
input in the built-in list), what the cache saved, and where each count goes (the ledger's row, the request
line, the metrics)."""

from __future__ import annotations

import json
import sqlite3
from types import MappingProxyType

import pytest

from qwen_gateway.pricing import prices
from qwen_gateway.observe.ledger import COLUMNS, Ledger, SharedLedger, row_of
from qwen_gateway.observe.metrics import Metrics
from qwen_gateway.observe.requestlog import format_line

from helpers.observe_testlib import exchange
from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)

# qwen3-coder-plus, international, first tier: input $1.0, output $5.0, implicit hits $0.2 per million tokens
EXPLICIT = {"prompt_tokens": 3000, "completion_tokens": 100, "prompt_tokens_details": {
    "cache_creation": {"ephemeral_5m_input_tokens": 1000}, "cache_creation_input_tokens": 1000,
    "cache_type": "ephemeral", "cached_tokens": 1500}}
IMPLICIT = {"prompt_tokens": 3000, "completion_tokens": 100, "prompt_tokens_details": {"cached_tokens": 1500}}


def test_explicit_creation_and_hits_at_model_studios_prices():
    t = prices.builtin()
    amount, unit = t.cost("payg:intl", "qwen3-coder-plus", EXPLICIT)
    assert unit == "USD" and amount == pytest.approx((500 * 1.0 + 1500 * 0.1 + 1000 * 1.25 + 100 * 5.0) / 1e6)
    assert t.saved("payg:intl", "qwen3-coder-plus", EXPLICIT) == pytest.approx((3000 - 500 - 150 - 1250) / 1e6)
    written_only = {"prompt_tokens": 2000, "completion_tokens": 0, "prompt_tokens_details": {
        "cache_creation_input_tokens": 2000, "cache_type": "ephemeral", "cached_tokens": 0}}
    assert t.saved("payg:intl", "qwen3-coder-plus", written_only) == pytest.approx(-500 / 1e6)  # the 25% surcharge


def test_implicit_hits_at_the_tables_cached_price():
    t = prices.builtin()
    assert t.cost("payg:intl", "qwen3-coder-plus", IMPLICIT)[0] == pytest.approx((1500 + 1500 * 0.2 + 500) / 1e6)
    assert t.saved("payg:intl", "qwen3-coder-plus", IMPLICIT) == pytest.approx(1500 * 0.8 / 1e6)
    # an explicit cache's hits without a write in this request: still the explicit price (cache_type says so)
    hit = {**IMPLICIT, "prompt_tokens_details": {"cached_tokens": 1500, "cache_type": "ephemeral",
                                                 "cache_creation_input_tokens": 0}}
    assert t.cost("payg:intl", "qwen3-coder-plus", hit)[0] == pytest.approx((1500 + 150 + 500) / 1e6)


def test_a_user_file_prices_cache_reads_and_writes(tmp_path):
    f = tmp_path / "prices.json"
    f.write_text(json.dumps({"*": {"m": {"input": 2, "output": 0, "cached": 1, "cache_read": 0.5, "cache_write": 3}}}))
    t = prices.load(str(f))
    assert t.cost("", "m", EXPLICIT)[0] == pytest.approx((500 * 2 + 1500 * 0.5 + 1000 * 3) / 1e6)
    assert t.cost("", "m", IMPLICIT)[0] == pytest.approx((1500 * 2 + 1500 * 1) / 1e6)
    plans = prices.load(str(f))  # a plan paid in its own unit saves no money
    assert plans.saved("coding", "qwen3-coder-plus", EXPLICIT) is None
    assert t.saved("", "no-such-model", EXPLICIT) is None


def priced(usage: dict, saved: float | None = 0.0004):
    ex = exchange(usage=usage, upstream_model="qwen3-coder-plus", account="")
    ex.result.cost, ex.result.cost_unit, ex.result.cache_saved = 0.00123, "USD", saved
    return ex


def test_the_ledger_row_keeps_cache_writes_which_cache_and_what_it_saved():
    row = row_of(priced(EXPLICIT))
    assert (row["cached_tokens"], row["cache_write_tokens"], row["cache_kind"], row["cache_saved"]) == \
        (1500, 1000, "explicit", 0.0004)
    row = row_of(priced(IMPLICIT))
    assert (row["cached_tokens"], row["cache_write_tokens"], row["cache_kind"]) == (1500, None, "implicit")
    row = row_of(priced({"prompt_tokens": 3, "completion_tokens": 1}, saved=None))
    assert (row["cache_write_tokens"], row["cache_kind"], row["cache_saved"]) == (None, None, None)


def test_the_request_line_and_metrics_count_cache_writes_and_savings():
    assert "cached=1500 cache_write=1000" in format_line(priced(EXPLICIT))
    m = Metrics()
    m.record(priced(EXPLICIT))
    text = m.exposition().decode()
    assert 'qwen_tokens_total{account="",key="",kind="cache_write",model="qwen3-coder-plus"} 1000.0' in text
    assert 'qwen_cache_saved_usd{account="",key="",model="qwen3-coder-plus"} 0.0004' in text


# ---- the ledger's new columns, in a ledger an older gateway wrote ---------------------------------------------

OLD_COLUMNS = [c for c in COLUMNS if c not in ("cache_write_tokens", "cache_kind", "cache_saved")]


def _cache_row() -> dict:
    return row_of(priced(EXPLICIT))


def test_an_older_sqlite_ledger_gains_the_cache_columns(tmp_path):
    path = tmp_path / "usage.sqlite3"
    db = sqlite3.connect(path)
    db.execute(f"CREATE TABLE usage ({', '.join(f'{c} {COLUMNS[c]}' for c in OLD_COLUMNS)})")
    db.execute("INSERT INTO usage (ts, prompt_tokens) VALUES (1, 5)")
    db.commit()
    db.close()
    led = Ledger(path)
    led.add([_cache_row()])
    rows = led.query("SELECT prompt_tokens, cache_write_tokens, cache_kind, cache_saved FROM usage ORDER BY ts")
    led.close()
    assert rows == [(5, None, None, None), (3000, 1000, "explicit", 0.0004)]


def test_an_older_shared_ledger_gains_the_cache_columns(pg_url):
    from qwen_gateway.storage.pg import Database
    from qwen_gateway.observe.ledger_pg import PG_STEPS

    Database(pg_url).migrate("usage", PG_STEPS[:-1])  # what the gateway before issue 39 left
    led = SharedLedger(Database(pg_url))
    led.add([_cache_row()])
    assert led.query("SELECT cache_write_tokens, cache_kind, cache_saved FROM usage") == [(1000, "explicit", 0.0004)]
    led.close()


def test_a_batch_request_costs_the_batch_rate_of_its_price():
    table = prices.PriceTable({"payg:intl": {"qwen-plus": (prices.Tier(None, 2.0, 10.0, cached=0.4),)}},
                       MappingProxyType({"coding": "requests"}))
    usage = {"prompt_tokens": 1000, "completion_tokens": 100, "prompt_tokens_details": {"cached_tokens": 500}}
    whole = table.cost("payg:intl", "qwen-plus", usage)
    assert table.cost("payg:intl", "qwen-plus", usage, batch=True) == (whole[0] / 2, "USD")
    assert table.cost("coding", "qwen-plus", usage, batch=True) == (1.0, "requests")  # a plan's unit: not money


# Qwen4's hour-long writes (Model Studio's "Explicit cache (Qwen4)"), priced for qwen4-max from its page (source AE)
HOUR = {"prompt_tokens": 3000, "completion_tokens": 100, "prompt_tokens_details": {
    "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 1000},
    "cache_creation_input_tokens": 1000, "cache_type": "ephemeral", "cached_tokens": 1500}}


def test_qwen4_max_bills_its_cache_as_its_page_says_reads_5_writes_125_and_200_percent():
    t = prices.builtin()
    charged = t.charge("payg:intl", "qwen4-max", HOUR)  # 500 plain, 1,500 read, 1,000 written for an hour, 100 out
    assert charged is not None and charged.unit == "USD"
    assert charged.amount == pytest.approx((500 * 1.5 + 1500 * 0.075 + 1000 * 3.0 + 100 * 4.5) / 1e6)
    five = {**HOUR, "prompt_tokens_details": {**HOUR["prompt_tokens_details"],
                                              "cache_creation": {"ephemeral_5m_input_tokens": 1000}}}
    assert t.cost("payg:intl", "qwen4-max", five)[0] == pytest.approx(
        (500 * 1.5 + 1500 * 0.075 + 1000 * 1.875 + 100 * 4.5) / 1e6)


def test_an_hour_long_cache_write_without_a_sourced_price_is_unpriced_never_guessed():
    t = prices.PriceTable({"payg:intl": {"m": (prices.Tier(None, 2.0, 8.0),)}}, MappingProxyType({}))
    charged = t.charge("payg:intl", "m", HOUR)
    assert charged is not None and charged.amount is None and charged.unit == prices.UNPRICED


def test_a_user_file_prices_hour_long_writes(tmp_path):
    f = tmp_path / "prices.json"
    f.write_text(json.dumps({"*": {"m": {"input": 2, "output": 0, "cache_read": 0.5, "cache_write_1h": 4}}}))
    assert prices.load(str(f)).cost("", "m", HOUR)[0] == pytest.approx((500 * 2 + 1500 * 0.5 + 1000 * 4) / 1e6)


def test_a_snapshot_is_priced_as_the_family_its_catalogue_row_names():
    """qwen3.8-max-0902 and qwen3-max-preview take their family's prices (their rows inherit them): priced as the
    family, not unpriced for a name the date pattern does not match."""
    table = prices.builtin()
    for snapshot, family in (("qwen3.8-max-0902", "qwen3.8-max"), ("qwen3-max-preview", "qwen3-max")):
        assert table.priced("payg:intl", snapshot)
        usage = {"prompt_tokens": 1000, "completion_tokens": 100}
        assert table.cost("payg:intl", snapshot, usage) == table.cost("payg:intl", family, usage)
