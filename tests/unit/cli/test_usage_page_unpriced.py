"""`qwen-usage report` never shows $0 for what has no price (issue 59): the summary counts the unpriced requests
(per model too) and a named key's `model_unpriced` refusals; the page has an `unpriced` card and column, says
on which models ("unpriced: 2 requests on qwen3.7-flash, …"), and its USD figures that would include them —
cache saved, a key's cost — read `unknown`."""

from __future__ import annotations

import re

from qwen_gateway.cli.usage_page import page
from qwen_gateway.cli.usage_summary import Totals, refused, summarize

from unit.cli.test_usage_page import cells, row


def unpriced(model: str = "qwen3.7-flash", **kw) -> dict:
    return row(upstream_model=model, cost=None, cost_unit="unpriced", **kw)


def test_totals_count_unpriced_requests_by_model_and_make_money_unknown():
    t = Totals()
    t.add(row(cost=0.002, cost_unit="USD", cache_saved=0.0005))
    assert (t.unpriced, t.usd_known, t.saved_known) == (0, True, True)
    t.add(unpriced())
    t.add(unpriced())
    t.add(unpriced("qwen3.6-plus"))
    assert t.unpriced == 3 and dict(t.unpriced_models) == {"qwen3.7-flash": 2, "qwen3.6-plus": 1}
    assert not t.usd_known and not t.saved_known


def test_a_keys_model_unpriced_refusal_is_its_refusal():
    assert refused(row(error="model_unpriced", status=400, account="emu"))  # refused after its account was chosen


def cards(html: str) -> dict[str, str]:
    return dict(re.findall(r'<div class="card" data-name="([^"]+)"><b>([^<]+)</b>', html))


def test_the_page_says_what_is_unpriced_and_never_zero_for_it():
    rows = [row(key_name="alice", cost=0.002, cost_unit="USD", cache_saved=0.0005),
            unpriced(key_name="alice"), unpriced(key_name="alice"), unpriced("qwen3.6-plus", key_name="bob")]
    html = page(summarize(rows), [], 0.0)
    assert cards(html)["unpriced"] == "3" and cards(html)["cache saved"] == "unknown"
    assert ('<p class="meta" id="unpriced">unpriced: 2 requests on qwen3.7-flash, 1 on qwen3.6-plus (no price in '
            'USD: docs/keys.md#unpriced-models)</p>') in html
    by_key = {c[1]: c for c in cells(html, "by-key")}
    assert by_key["alice"][6] == "unknown" and by_key["bob"][6] == "unknown" and by_key[""][6] == "unknown"
    assert [c[-1] for c in cells(html, "by-model")] == ["0", "1", "2", "3"]  # the unpriced column, total last


def test_a_period_without_unpriced_requests_shows_neither_card_nor_line():
    html = page(summarize([row(cost=0.002, cost_unit="USD", cache_saved=0.0005)]), [], 0.0)
    assert "unpriced" not in cards(html) and 'id="unpriced"' not in html and cards(html)["cache saved"] == "$0.000500"
