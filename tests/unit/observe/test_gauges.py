"""The gauges read from state at a scrape (observe/gauges.py): without their source a collection is empty, never
an error; the sources are let go after (metrics.py's exposition). test_metrics.py reads them through a scrape."""

from __future__ import annotations

from qwen_gateway.observe.gauges import AccountGauges, LearnedGauges


def test_without_a_source_the_families_are_there_and_empty():
    assert [f.name for f in AccountGauges().collect()] == ["qwen_account_cooldown_seconds", "qwen_account_usable",
                                                           "qwen_account_requests_today", "qwen_account_state"]
    families = list(LearnedGauges().collect())
    assert [(f.name, f.samples) for f in families] == [("qwen_learned_fact", []), ("qwen_unknown_refusals", [])]
