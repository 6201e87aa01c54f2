"""`qwen-keys list` and a key's limits in one line (cli/keys_list.py), from the budgets' declarations
(tenancy/budgets.py): each budget named by its flag; a budget without a column of its own gets the BUDGETS column
(with what the key spent that it counts) and its JSON field only where a key has one."""

from __future__ import annotations

from qwen_gateway.cli import keys_list
from qwen_gateway.tenancy.ring import KeyRecord, digest
from qwen_gateway.tenancy.schema import Delta
from qwen_gateway.tenancy.store import KeyStore


def test_a_keys_limits_in_one_line_by_their_flags():
    assert keys_list.described(KeyRecord("a", rpm=3, tpm=1000, daily_tokens=20, monthly_usd=5)) == \
        "rpm 3, tpm 1,000, daily-tokens 20, monthly-usd $5.00"
    assert keys_list.described(KeyRecord("b")) == "no limits"


def test_the_first_releases_budgets_keep_their_columns_and_fields(tmp_path):
    store = KeyStore.local(tmp_path)
    try:
        store.add("ci", digest(b"ci"), {"daily_tokens": 20, "monthly_usd": 5.0})
        store.write_spend({("ci", "2026-11-23"): Delta(requests=1, tokens=22, usd=0.5,
                                                       models={"qwen3-coder-plus": [22, 0.5]})})
        (row,) = keys_list.rows(store)
    finally:
        store.close()
    assert (row["daily_tokens"], row["monthly_usd"]) == (20, 5.0)
    assert set(row) == {"name", "state", "rpm", "tpm", "daily_tokens", "monthly_usd", "tokens_today",
                        "requests_today", "refused_today", "usd_this_month", "unpriced_this_month",
                        "plan_requests_this_month", "plan_tokens_this_month", "last_used"}
    assert "BUDGETS" not in keys_list.table([row])
