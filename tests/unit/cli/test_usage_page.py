"""The HTML of `qwen-usage report` (cli/usage_page.py), from a summary: one self-contained page its own
Content-Security-Policy forbids to load anything, every ledger value escaped (model names and errors come from
clients), the empty period said, the per-key section only when a named key was used, and the commonest error
codes. tests/unit/cli/test_usage_report.py parses the whole page of a real ledger back."""

from __future__ import annotations

import re
from html import escape

from qwen_gateway.cli.usage_page import CSP, page
from qwen_gateway.cli.usage_summary import COLUMNS, summarize

HOSTILE = '<script>alert("x")</script><img src=http://127.0.0.1:1/x>&'


def row(**kw) -> dict:
    base = dict.fromkeys(COLUMNS)
    base.update(ts=1_763_640_000.0, day="2026-11-20", endpoint="chat.completions", model="gpt-4o",
                upstream_model="qwen3-coder-plus", account="demo", status=200, prompt_tokens=1000,
                completion_tokens=100, cached_tokens=0, duration_ms=200.0, ttfb_ms=50.0)
    base.update(kw)
    return base


def cells(html: str, table_id: str) -> list[list[str]]:
    body = re.search(f'<table id="{table_id}">.*?</table>', html)
    assert body is not None, table_id
    return [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in re.findall(r"<tr[^>]*>(.*?)</tr>", body.group(0))][1:]


def test_the_page_loads_nothing_and_forbids_loading():
    html = page(summarize([row()]), [], 0.0)
    assert html.startswith("<!DOCTYPE html>\n<html lang=\"en\">") and html.endswith("</body></html>\n")
    assert f'<meta http-equiv="Content-Security-Policy" content="{escape(CSP)}">' in html
    assert CSP == "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    assert not re.search(r"<script|<link|<img|src=|href=|@import|url\(", html)


def test_values_from_clients_are_escaped_everywhere():
    html = page(summarize([row(model=HOSTILE, upstream_model=None, status=400, error=HOSTILE)]), [f"model={HOSTILE}"],
                0.0)
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=http://127.0.0.1:1/x&gt;&amp;" in html


def test_an_empty_period_says_so_and_shows_no_tables():
    html = page(summarize([]), ["since=7d"], 0.0)
    assert '<p class="empty" id="empty">No requests in this period.</p>' in html
    assert "Requests: no requests · filters: <span id=\"filters\">since=7d</span>" in html
    assert "<table" not in html


def test_no_filters_is_said():
    assert '<span id="filters">none (all recorded requests)</span>' in page(summarize([row()]), [], 0.0)


def test_cards_and_the_total_row():
    rows = [row(), row(ts=1_763_640_060.0, status=429, error="insufficient_quota", prompt_tokens=None,
                       completion_tokens=None, cached_tokens=None), row(cached_tokens=512, cache_write_tokens=64)]
    html = page(summarize(rows), [], 0.0)
    cards = dict(re.findall(r'<div class="card" data-name="([^"]+)"><b>([^<]+)</b>', html))
    assert cards == {"requests": "3", "prompt tokens": "2,000", "completion tokens": "200", "cached tokens": "512",
                     "cache writes": "64", "errors": "1", "error rate": "33.3%"}  # no cache saved: no card
    assert cells(html, "by-model") == [["2026-11-20", "qwen3-coder-plus", "3", "2,000", "200", "512", "64", "1", "0"],
                                       ["total", "", "3", "2,000", "200", "512", "64", "1", "0"]]


def test_cache_saved_gets_a_card_negative_included():
    html = page(summarize([row(cache_saved=-0.0004)]), [], 0.0)
    assert '<div class="card" data-name="cache saved"><b>-$0.000400</b>cache saved</div>' in html


def test_the_key_section_only_when_a_named_key_was_used():
    assert 'id="by-key"' not in page(summarize([row()]), [], 0.0)
    rows = [row(key_name="alice", cost=0.000051, cost_unit="USD"), row(key_name="ci", cost=2, cost_unit="requests"),
            row(key_name="alice", error="invalid_api_key", status=401, account=None)]
    html = page(summarize(rows), [], 0.0)
    assert cells(html, "by-key") == [
        ["2026-11-20", "alice", "2", "1", "2,000", "200", "$0.000051", "-"],
        ["2026-11-20", "ci", "1", "0", "1,000", "100", "$0", "2 requests"],
        ["total", "", "3", "1", "3,000", "300", "$0.000051", "2 requests"]]


def test_the_commonest_error_codes_first_and_the_rest_counted():
    errors = [row(status=400, error=f"code_{n}") for n in range(8)] + [row(status=400, error="code_7")] * 2
    html = page(summarize(errors), [], 0.0)
    (day,) = cells(html, "errors-by-day")
    assert day == ["2026-11-20", "10", "10", "100.0%",
                   "code_7 ×3, code_0 ×1, code_1 ×1, code_2 ×1, code_3 ×1, code_4 ×1, 2 more"]


def test_the_slowest_requests_show_durations_in_ms_or_seconds():
    html = page(summarize([row(duration_ms=4200.0, ttfb_ms=3900.0), row(duration_ms=900.0, ttfb_ms=None,
                                                                        endpoint="responses")]), [], 0.0)
    slowest = cells(html, "slowest")
    assert [r[1:] for r in slowest] == [["chat.completions", "qwen3-coder-plus", "demo", "200", "4.20s", "3.90s", ""],
                                        ["responses", "qwen3-coder-plus", "demo", "200", "900ms", "", ""]]
    assert [r[5] for r in cells(html, "first-byte")] == ["4.20s"]  # a whole answer has no first byte


def test_sections_written_elsewhere_come_last_and_not_in_an_empty_period():
    """The Conversations section (cli/usage_page_conversations.py) is written by its own module, after the page's."""
    extra = '<h2 id="x">&lt;escaped there&gt;</h2>'
    assert page(summarize([row()]), [], 0.0, [extra]).endswith(f"{extra}</body></html>\n")
    assert extra not in page(summarize([]), [], 0.0, [extra])
