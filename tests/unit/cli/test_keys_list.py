"""`qwen-keys list` and a key's limits in one line (cli/keys_list.py), from the budgets' declarations
(tenancy/budgets.py): each budget named by its flag; a budget without a column of its own gets the BUDGETS column
(with what the key spent that it counts) and its JSON field only where a key has one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

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


def _listed(state, *args: str) -> str:
    r = subprocess.run([str(Path(sys.executable).parent / "qwen-keys"), "list", "--state-dir", str(state), *args],
                       capture_output=True, text=True, timeout=60, env={**os.environ, "QWEN_STATE_URL": ""})
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_the_list_fits_100_columns_and_wide_shows_every_column(tmp_path):
    # issue 82: the list was about 200 columns wide; `--wide` keeps the table of one column per field
    store = KeyStore.local(tmp_path)
    try:
        store.add("alice-laptop", digest(b"a"), {"rpm": 60, "tpm": 100000, "daily_tokens": 2000000,
                                                  "monthly_usd": 25.0},
                  '{"model-monthly-usd": {"qwen3-max": 1.5, "qwen3-coder-plus": 12.0}}')
        store.write_spend({("alice-laptop", time.strftime("%Y-%m-%d", time.gmtime())): Delta(
            requests=1234, tokens=1234567, usd=12.345678, refused=12, unpriced=3, plan_requests=40, plan_tokens=9000,
            last_used=time.time(), models={"qwen3-max": [1000, 0.5]})})
    finally:
        store.close()
    narrow, wide, rows = _listed(tmp_path), _listed(tmp_path, "--wide"), _listed(tmp_path, "--json")
    assert max(len(line) for line in narrow.splitlines()) <= 100, narrow
    assert narrow.splitlines()[0].split() == ["NAME", "STATE", "TODAY", "THIS", "MONTH", "LAST", "USED"]
    for said in ("rpm 60", "tpm 100,000", "daily-tokens 2,000,000", "monthly-usd $25.00",
                 "model-monthly-usd qwen3-max: $0.500000 of $1.50", "12 refused today", "3 unpriced this month",
                 "plan this month: 40 requests, 9,000 tokens"):
        assert said in " ".join(narrow.split()), (said, narrow)
    assert wide.splitlines()[0].split()[:6] == ["NAME", "STATE", "RPM", "TPM", "DAILY", "TOKENS"]
    assert max(len(line) for line in wide.splitlines()) > 100
    assert json.loads(rows)[0]["model_monthly_usd"]["qwen3-max"] == {"limit": 1.5, "spent_this_month": 0.5}
