"""What `qwen-usage report` sums (cli/usage_summary.py): the ledger's rows read with one plain SELECT, then totals
per day by model, account and key, errors counted as the other views count them (an error status, no status, a
stream that ended in an error), a named key's own refusals, money and plan units apart, and the slowest
requests. tests/unit/cli/test_usage_report.py checks the page built from a real ledger."""

from __future__ import annotations

import pytest

from qwen_gateway.cli.usage_summary import (COLUMNS, Totals, error_of, failed, load, model_of, refused, summarize)


def row(**kw) -> dict:
    base = dict.fromkeys(COLUMNS)
    base.update(ts=1000.0, day="2026-11-20", endpoint="chat.completions", model="gpt-4o",
                upstream_model="qwen3-coder-plus", account="demo", status=200, prompt_tokens=100,
                completion_tokens=10, cached_tokens=0)
    base.update(kw)
    return base


@pytest.mark.parametrize("status,error,is_failed", [(200, None, False), (429, None, True), (None, None, True),
                                                    (200, "idle for 300 s: closed", True), (399, None, False)])
def test_what_counts_as_an_error(status, error, is_failed):
    assert failed(row(status=status, error=error)) is is_failed


def test_a_refusal_is_the_gateways_own_for_a_key_with_no_account_asked():
    assert refused(row(error="invalid_api_key", account=None, status=401))
    assert refused(row(error="rate_limit_exceeded", account="", status=429))
    assert not refused(row(error="insufficient_quota", account="demo", status=429))  # Qwen's quota, not the key's
    assert not refused(row(error="invalid_json", account=None, status=400))


def test_the_model_and_error_named():
    assert model_of(row()) == "qwen3-coder-plus"
    assert model_of(row(upstream_model=None)) == "gpt-4o"
    assert model_of(row(upstream_model=None, model=None)) == "-"
    assert error_of(row(error="invalid_json", status=400)) == "invalid_json"
    assert error_of(row(status=502)) == "status 502"
    assert error_of(row(status=None)) == "no answer"


def test_totals_keep_money_and_plan_units_apart():
    t = Totals()
    t.add(row(prompt_tokens=100, completion_tokens=10, cached_tokens=50, cache_write_tokens=20, cache_saved=0.001,
              cost=0.0002, cost_unit="USD"))
    t.add(row(prompt_tokens=None, completion_tokens=None, cached_tokens=None, status=500, cost=1, cost_unit="requests"))
    t.add(row(prompt_tokens=30, completion_tokens=3, cost=33, cost_unit="tokens", error="invalid_api_key", account=None))
    t.add(row(cost=None, cost_unit=None))
    assert (t.requests, t.prompt, t.completion, t.cached, t.written) == (4, 230, 23, 50, 20)
    assert (t.tokens, t.errors, t.refused) == (253, 2, 1)
    assert t.usd == pytest.approx(0.0002) and t.saved == pytest.approx(0.001)
    assert dict(t.plan) == {"requests": 1, "tokens": 33}
    assert t.rate == 0.5
    assert Totals().rate == 0.0  # no requests: no division by zero


def test_load_reads_the_columns_with_the_filters_condition():
    class Ledger:
        def __init__(self) -> None:
            self.asked: list = []

        def query(self, sql, args=()):
            self.asked.append((sql, args))
            return [tuple(range(len(COLUMNS)))]
    ledger = Ledger()
    rows = load(ledger, "day >= ? AND key_name = ?", ("2026-11-20", "alice"))
    assert ledger.asked == [(f"SELECT {', '.join(COLUMNS)} FROM usage WHERE day >= ? AND key_name = ?",
                             ("2026-11-20", "alice"))]
    assert rows == [dict(zip(COLUMNS, range(len(COLUMNS))))]


def test_load_refuses_rows_of_another_width():
    class Short:
        def query(self, sql, args=()):
            return [(1, 2)]
    with pytest.raises(ValueError):
        load(Short(), "1=1", ())


def test_summarize_by_day_model_account_key_and_endpoint():
    rows = [
        row(ts=300.0, day="2026-11-21", upstream_model="qwen3-coder-flash", account="team", key_name="alice"),
        row(ts=100.0, day="2026-11-20"),
        row(ts=200.0, day="2026-11-20", status=429, error="insufficient_quota", prompt_tokens=None,
            completion_tokens=None),
        row(ts=250.0, day="2026-11-20", endpoint="responses", error="idle for 300 s: closed", key_name="alice"),
        row(ts=None, day=None, endpoint=None, model=None, upstream_model=None, account=None, status=400,
            error="invalid_json"),
    ]
    s = summarize(rows)
    assert s.days == ["-", "2026-11-20", "2026-11-21"]
    assert (s.total.requests, s.total.errors, s.first_ts, s.last_ts) == (5, 3, 100.0, 300.0)
    assert {k: t.requests for k, t in s.by_model.items()} == {
        ("2026-11-21", "qwen3-coder-flash"): 1, ("2026-11-20", "qwen3-coder-plus"): 3, ("-", "-"): 1}
    assert {k: t.requests for k, t in s.by_account.items()} == {
        ("2026-11-21", "team"): 1, ("2026-11-20", "demo"): 3, ("-", "-"): 1}
    assert {k: t.requests for k, t in s.by_key.items()} == {
        ("2026-11-21", "alice"): 1, ("2026-11-20", "-"): 2, ("2026-11-20", "alice"): 1, ("-", "-"): 1}
    assert {e: (t.requests, t.errors) for e, t in s.per_endpoint.items()} == {
        "chat.completions": (3, 1), "responses": (1, 1), "-": (1, 1)}
    assert dict(s.codes_by_day["2026-11-20"]) == {"insufficient_quota": 1, "idle for 300 s: closed": 1}
    assert dict(s.codes_by_endpoint["-"]) == {"invalid_json": 1}
    assert "2026-11-21" not in s.codes_by_day  # no error that day


def test_the_slowest_requests_longest_first_ties_oldest_first_untimed_left_out():
    rows = [row(ts=1.0, duration_ms=500.0, ttfb_ms=None), row(ts=3.0, duration_ms=900.0, ttfb_ms=40.0),
            row(ts=2.0, duration_ms=900.0, ttfb_ms=80.0), row(ts=4.0, duration_ms=None, ttfb_ms=10.0),
            row(ts=5.0, duration_ms=100.0, ttfb_ms=20.0)]
    s = summarize(rows, top=3)
    assert [(r["ts"], r["duration_ms"]) for r in s.slowest] == [(2.0, 900.0), (3.0, 900.0), (1.0, 500.0)]
    assert [r["ts"] for r in s.first_byte] == [2.0, 3.0, 5.0]


def test_no_rows_is_an_empty_summary():
    s = summarize([])
    assert (s.days, s.total.requests, s.slowest, s.first_ts, s.last_ts) == ([], 0, [], None, None)
