"""qwen-usage's plain-text tables (cli/usage_text.py): the aggregated views with their total line and the request
listing, laid out exactly as docs/observability.md and docs/keys.md show them, from the rows usage.py reads."""

from __future__ import annotations

from qwen_gateway.cli.usage import HEADS, KEY_SUMS, SUMS, USD_SUMS
from qwen_gateway.cli.usage_text import request_table, table


def by_model(account, model, requests, prompt, completion, cached, written, saved, errors, unpriced=0) -> dict:
    return {"account": account, "model": model, "requests": requests, "prompt_tokens": prompt,
            "completion_tokens": completion, "cached_tokens": cached, "cache_write_tokens": written,
            "cache_saved_usd": saved, "errors": errors, "unpriced": unpriced}


def test_the_default_view_as_docs_observability_md_shows_it():
    rows = [by_model("-", "-", 3, 0, 0, 0, 0, 0.0, 3), by_model("-", "gpt-4o-mini", 1, 0, 0, 0, 0, 0.0, 1),
            by_model("demo", "qwen3-coder-plus", 4, 2706, 9, 2048, 328, None, 1, 3)]  # the emulator's: no price
    assert table(rows, SUMS, HEADS, USD_SUMS) == """\
account  model             requests  prompt  completion  cached  cache write  cache saved  errors  unpriced
-------  ----------------  --------  ------  ----------  ------  -----------  -----------  ------  --------
-        -                        3       0           0       0            0           $0       3         0
-        gpt-4o-mini              1       0           0       0            0           $0       1         0
demo     qwen3-coder-plus         4   2,706           9   2,048          328      unknown       1         3
-------  ----------------  --------  ------  ----------  ------  -----------  -----------  ------  --------
total                             8   2,706           9   2,048          328      unknown       5         3"""


def test_a_sum_that_includes_unpriced_requests_is_unknown_never_zero():
    """Issue 59: a row with requests nothing priced has no USD sum (None), and so has the total."""
    rows = [by_model("demo", "qwen3-coder-plus", 4, 2706, 9, 2048, 328, 0.0012, 0),
            by_model("demo", "qwen3.7-flash", 2, 300, 20, 0, 0, None, 0, 2)]
    lines = table(rows, SUMS, HEADS, USD_SUMS).splitlines()
    assert lines[2].split()[-3:] == ["$0.001200", "0", "0"]
    assert lines[3].split()[-3:] == ["unknown", "0", "2"]
    assert lines[-1].split()[-3:] == ["unknown", "0", "2"]


def test_the_by_key_view_as_docs_keys_md_shows_it():
    def key(name, requests, refused, prompt, completion, cost):
        return {"key": name, "requests": requests, "refused": refused, "prompt_tokens": prompt,
                "completion_tokens": completion, "cost_usd": cost, "cache_saved_usd": 0.0, "plan_requests": 0,
                "plan_tokens": 0, "unpriced": 0}
    rows = [key("-", 1, 1, 0, 0, 0.0), key("alice", 5, 2, 6, 9, 0.000051), key("ci", 3, 2, 10, 12, 0.000070)]
    assert table(rows, KEY_SUMS, HEADS, USD_SUMS) == """\
key    requests  refused  prompt  completion       cost  cache saved  plan requests  plan tokens  unpriced
-----  --------  -------  ------  ----------  ---------  -----------  -------------  -----------  --------
-             1        1       0           0         $0           $0              0            0         0
alice         5        2       6           9  $0.000051           $0              0            0         0
ci            3        2      10          12  $0.000070           $0              0            0         0
-----  --------  -------  ------  ----------  ---------  -----------  -------------  -----------  --------
total         9        5      16          21  $0.000121           $0              0            0         0"""


def test_money_that_may_be_negative_and_large_amounts():
    """What the caches saved can be negative (writes cost more than the hits saved); dollars show cents."""
    rows = [{"day": "2026-11-22", "cache_saved_usd": -0.0004, "cost_usd": 1234.5},
            {"day": "2026-11-23", "cache_saved_usd": 0.0001, "cost_usd": 0.25}]
    lines = table(rows, ("cache_saved_usd", "cost_usd"), HEADS, USD_SUMS).splitlines()
    assert lines[0] == "day         cache saved       cost"
    assert lines[2] == "2026-11-22   -$0.000400  $1,234.50"
    assert lines[-1] == "total        -$0.000300  $1,234.75"


def test_no_rows():
    assert table([], SUMS, HEADS, USD_SUMS) == "No requests recorded."
    assert request_table([]) == "No requests recorded."


def request(time, path, model, upstream, account, status, prompt, completion, est, ms, error=None, cuts=None) -> dict:
    return {"time": time, "method": "POST", "path": path, "endpoint": "chat.completions", "model": model,
            "upstream_model": upstream, "account": account, "status": status, "prompt_tokens": prompt,
            "completion_tokens": completion, "est_tokens": est, "duration_ms": ms, "error": error, "cuts": cuts}


def test_the_request_listing_as_docs_observability_md_shows_it():
    rows = [
        request("2026-11-22 15:53:23", "/v1/chat/completions", "gpt-4o", "qwen3-coder-plus", "demo", 200, 1352, 3,
                1357, 3.0),
        request("2026-11-22 15:53:24", "/v1/responses", "gpt-4o", "qwen3-coder-plus", "demo", 200, 2, 3, 1, 6.4),
        request("2026-11-22 15:53:24", "/v1/chat/completions", "gpt-4o-mini", None, None, 400, None, None, 2004, 2.0,
                "context_length_exceeded"),
        request("2026-11-22 15:53:24", "/v1/chat/completions", None, None, None, 400, None, None, None, 1.0,
                "invalid_json"),
    ]
    assert request_table(rows) == """\
time                 request                    model                    account  status     in  out    est  total  cut  error
-------------------  -------------------------  -----------------------  -------  ------  -----  ---  -----  -----  ---  -----------------------
2026-11-22 15:53:23  POST /v1/chat/completions  gpt-4o→qwen3-coder-plus  demo        200  1,352    3  1,357    3ms
2026-11-22 15:53:24  POST /v1/responses         gpt-4o→qwen3-coder-plus  demo        200      2    3      1    6ms
2026-11-22 15:53:24  POST /v1/chat/completions  gpt-4o-mini→?            -           400              2,004    2ms       context_length_exceeded
2026-11-22 15:53:24  POST /v1/chat/completions  -                        -           400                       1ms       invalid_json"""


def test_a_cut_stream_says_how_many_times_it_broke():
    # issue 82: `qwen-usage requests` had no column for a stream that was cut (the ledger's `cuts`)
    rows = [request("2026-11-22 15:53:23", "/v1/chat/completions", "gpt-4o", "qwen3-max", "demo", 200, 10, 3, 9, 3.0,
                    cuts=1),
            request("2026-11-22 15:53:24", "/v1/chat/completions", "gpt-4o", "qwen3-max", "demo", 200, 10, 3, 9, 3.0,
                    "upstream_error", cuts=2)]
    lines = request_table(rows).splitlines()
    assert lines[0].split()[-2:] == ["cut", "error"]
    assert lines[2].split()[-1] == "1" and lines[3].split()[-2:] == ["2", "upstream_error"]


def test_a_request_row_with_little_known():
    """No time, method or path (an old ledger row): question marks; no status: `?`; slow ones in seconds."""
    row = {"time": None, "method": None, "path": None, "endpoint": "messages", "model": None,
           "upstream_model": "qwen3-max", "account": None, "status": None, "prompt_tokens": None,
           "completion_tokens": None, "est_tokens": None, "duration_ms": 61_500.0, "error": None, "cuts": None}
    assert request_table([row]).splitlines()[2] == "?     ? messages  ?→qwen3-max  -             ?" + " " * 16 + "61.50s"
