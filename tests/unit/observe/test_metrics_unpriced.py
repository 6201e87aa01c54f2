"""/metrics counts what has no price (issue 59): `qwen_unpriced_requests_total` by the model sent upstream, the
account and the named key — never a cost of $0 in `qwen_cost_usd_total`; an answer priced by qwen_unpriced_as
is a cost like any other."""

from __future__ import annotations

from qwen_gateway.observe.metrics import Metrics

from helpers.observe_testlib import exchange


def charged(unit: str, cost: float | None = None, priced_as: str = ""):
    ex = exchange(upstream_model="qwen3.7-flash", account="emu")
    ex.key.name = "alice"
    ex.result.cost, ex.result.cost_unit, ex.result.priced_as = cost, unit, priced_as
    return ex


def test_unpriced_answers_are_counted_by_model_never_as_a_cost():
    m = Metrics()
    m.record(charged("unpriced"))
    m.record(charged("unpriced"))
    text = m.exposition().decode()
    assert 'qwen_unpriced_requests_total{account="emu",key="alice",model="qwen3.7-flash"} 2.0' in text
    assert "# HELP qwen_unpriced_requests_total" in text
    assert "qwen_cost_usd_total{" not in text


def test_an_answer_priced_as_another_model_is_a_cost():
    m = Metrics()
    m.record(charged("USD", 0.002, "qwen3-max"))
    text = m.exposition().decode()
    assert 'qwen_cost_usd_total{account="emu",key="alice",model="qwen3.7-flash"} 0.002' in text
    assert "qwen_unpriced_requests_total{" not in text
