"""`qwen-usage report`: the usage ledger as one self-contained HTML page (tokens and requests per day by
model and account, error rates, the slowest requests). The page is parsed back with html.parser and its
numbers compared with the rows written (Ledger.add); tests/e2e/test_e2e_usage_report.py opens it in Chromium."""

from __future__ import annotations

import stat
import time
from html import escape
from html.parser import HTMLParser

import pytest

from qwen_gateway.cli import usage as usage_cli
from qwen_gateway.observe.ledger import FILENAME, Ledger

HOSTILE = '<script>alert("x")</script><img src=http://127.0.0.1:1/x>&'


def ts_of(day: str, hour: int = 12, minute: int = 0) -> float:
    y, m, d = (int(p) for p in day.split("-"))
    return time.mktime((y, m, d, hour, minute, 0, 0, 0, -1))


def row(day: str, minute: int = 0, *, model: str | None = "gpt-4o", upstream: str | None = "qwen3-coder-plus",
        account: str | None = "demo", status: int | None = 200, error: str | None = None, endpoint="chat.completions",
        prompt: int | None = 100, completion: int | None = 10, cached: int | None = 0, ttfb: float | None = 50.0,
        duration: float | None = 200.0, path="/v1/chat/completions") -> dict:
    return {"ts": ts_of(day, 12, minute), "day": day, "endpoint": endpoint, "method": "POST", "path": path,
            "model": model, "upstream_model": upstream, "account": account, "status": status, "error": error,
            "prompt_tokens": prompt, "completion_tokens": completion, "cached_tokens": cached,
            "ttfb_ms": ttfb, "duration_ms": duration, "stream": 0, "retries": 0}


ROWS = [
    # 2026-11-20: two requests of one model on one account
    row("2026-11-20", 0, prompt=1000, completion=100, cached=512),
    row("2026-11-20", 1, prompt=2000, completion=200, cached=0, duration=4200.0, ttfb=3900.0),
    # 2026-11-21: two models, two accounts, an upstream error and a broken stream
    row("2026-11-21", 0, upstream="qwen3-coder-flash", account="team", prompt=300, completion=30, cached=100),
    row("2026-11-21", 1, status=429, error="insufficient_quota", prompt=None, completion=None, cached=None,
        duration=900.0, ttfb=None),
    row("2026-11-21", 2, endpoint="responses", path="/v1/responses", error="idle for 300 s: closed",
        prompt=50, completion=5, cached=0, duration=9100.0, ttfb=25.0),
    # 2026-11-22: refused before any account or model (bad JSON); a hostile model name; a /v1/models listing
    row("2026-11-22", 0, model=None, upstream=None, account=None, status=400, error="invalid_json", prompt=None,
        completion=None, cached=None, ttfb=None, duration=2.0),
    row("2026-11-22", 1, model=HOSTILE, upstream=None, account="team", prompt=7, completion=3, cached=0),
    row("2026-11-22", 2, model=None, upstream=None, account=None, endpoint="models", path="/v1/models", prompt=None,
        completion=None, cached=None, duration=99_999.0),  # a local answer: listed by `requests`, not here
]


class Page(HTMLParser):
    """The page as tables (id -> rows of cell texts), SVG segments, all text, tags and attributes seen."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.segments: list[dict[str, str]] = []
        self.svgs: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "table":
            self._table = a.get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []
        elif tag == "svg":
            self.svgs.append(a.get("id") or "")
        elif tag == "rect" and "data-series" in a:
            self.segments.append({**a, "chart": self.svgs[-1]})

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def body(self, table: str) -> list[list[str]]:
        return [r for r in self.tables[table][1:] if r]

    def chart(self, chart: str) -> dict[tuple[str, str], float]:
        return {(s["data-day"], s["data-series"]): float(s["data-value"]) for s in self.segments
                if s["chart"] == chart}


@pytest.fixture
def state(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    ledger = Ledger(folder / FILENAME)
    ledger.add(ROWS)
    ledger.close()
    return folder


def render(tmp_path, state, *args: str, capsys=None) -> tuple[Page, str]:
    out = tmp_path / "out" / "report.html"
    out.parent.mkdir(exist_ok=True)
    assert usage_cli.main(["report", "--out", str(out), "--state-dir", str(state), *args]) == 0
    text = out.read_text(encoding="utf-8")
    return Page(text), text


def test_tokens_and_requests_per_day_by_model_and_account(tmp_path, state, capsys):
    page, _ = render(tmp_path, state)
    assert capsys.readouterr().out.strip() == str(tmp_path / "out" / "report.html")
    # by (day, Qwen model): requests, prompt, completion, cached, cache writes, errors, unpriced (`qwen-usage models`)
    assert page.body("by-model") == [
        ["2026-11-20", "qwen3-coder-plus", "2", "3,000", "300", "512", "0", "0", "0"],
        ["2026-11-21", "qwen3-coder-flash", "1", "300", "30", "100", "0", "0", "0"],
        ["2026-11-21", "qwen3-coder-plus", "2", "50", "5", "0", "0", "2", "0"],
        ["2026-11-22", "-", "1", "0", "0", "0", "0", "1", "0"],
        ["2026-11-22", HOSTILE, "1", "7", "3", "0", "0", "0", "0"],
        ["total", "", "7", "3,357", "338", "612", "0", "3", "0"],
    ]
    assert page.body("by-account") == [
        ["2026-11-20", "demo", "2", "3,000", "300", "512", "0", "0", "0"],
        ["2026-11-21", "demo", "2", "50", "5", "0", "0", "2", "0"],
        ["2026-11-21", "team", "1", "300", "30", "100", "0", "0", "0"],
        ["2026-11-22", "-", "1", "0", "0", "0", "0", "1", "0"],
        ["2026-11-22", "team", "1", "7", "3", "0", "0", "0", "0"],
        ["total", "", "7", "3,357", "338", "612", "0", "3", "0"],
    ]
    # the charts draw the same numbers: tokens (prompt + completion) and requests per day, stacked
    assert page.chart("chart-tokens-model") == {
        ("2026-11-20", "qwen3-coder-plus"): 3300, ("2026-11-21", "qwen3-coder-flash"): 330,
        ("2026-11-21", "qwen3-coder-plus"): 55, ("2026-11-22", HOSTILE): 10}
    assert page.chart("chart-requests-account") == {
        ("2026-11-20", "demo"): 2, ("2026-11-21", "demo"): 2, ("2026-11-21", "team"): 1,
        ("2026-11-22", "-"): 1, ("2026-11-22", "team"): 1}
    assert set(page.svgs) == {"chart-tokens-model", "chart-requests-model", "chart-tokens-account",
                              "chart-requests-account", "chart-errors-day"}


def test_error_rates_per_day_and_endpoint_with_their_codes(tmp_path, state):
    page, _ = render(tmp_path, state)
    assert page.body("errors-by-day") == [
        ["2026-11-20", "2", "0", "0.0%", ""],
        ["2026-11-21", "3", "2", "66.7%", "idle for 300 s: closed ×1, insufficient_quota ×1"],
        ["2026-11-22", "2", "1", "50.0%", "invalid_json ×1"],
    ]
    assert page.body("errors-by-endpoint") == [
        ["chat.completions", "6", "2", "33.3%", "insufficient_quota ×1, invalid_json ×1"],
        ["responses", "1", "1", "100.0%", "idle for 300 s: closed ×1"],
    ]
    assert page.chart("chart-errors-day") == {
        ("2026-11-20", "ok"): 2, ("2026-11-21", "ok"): 1, ("2026-11-21", "errors"): 2,
        ("2026-11-22", "ok"): 1, ("2026-11-22", "errors"): 1}


def test_slowest_requests_by_duration_and_by_first_byte(tmp_path, state):
    page, _ = render(tmp_path, state, "--limit", "3")
    slow = page.body("slowest")
    assert [r[1:] for r in slow] == [
        ["responses", "qwen3-coder-plus", "demo", "200", "9.10s", "25ms", "idle for 300 s: closed"],
        ["chat.completions", "qwen3-coder-plus", "demo", "200", "4.20s", "3.90s", ""],
        ["chat.completions", "qwen3-coder-plus", "demo", "429", "900ms", "", "insufficient_quota"],
    ]
    assert slow[0][0].endswith("12:02:00") and slow[0][0].startswith("2026-11-21")
    first = page.body("first-byte")
    assert [(r[1], r[5], r[6]) for r in first] == [
        ("chat.completions", "4.20s", "3.90s"), ("chat.completions", "200ms", "50ms"),
        ("chat.completions", "200ms", "50ms")]


def test_hostile_names_are_text_not_markup(tmp_path, state):
    page, text = render(tmp_path, state)
    assert HOSTILE in "".join(page.text)  # shown as it was sent...
    assert not any(tag in ("script", "img", "iframe", "link", "object") for tag, _ in page.tags)  # ...never run
    assert "<script" not in text and "<img" not in text
    assert "://" not in text.replace(escape(HOSTILE), "")  # no address but the hostile text: nothing to load
    assert not [(tag, a) for tag, a in page.tags if {"src", "href", "srcset", "action", "xlink:href"} & set(a)]
    csp = [a for tag, a in page.tags if tag == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert [a["content"] for a in csp] == ["default-src 'none'; style-src 'unsafe-inline'; img-src data:"]


def test_no_ledger_is_a_message_and_no_file(tmp_path, capsys, monkeypatch):
    """Issue 32: with no ledger the report still wrote (and overwrote) usage-report.html in the current folder."""
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "nothing"
    assert usage_cli.main(["report", "--state-dir", str(empty)]) == 1
    err = capsys.readouterr().err
    assert f"no ledger at {empty / FILENAME} yet" in err and "no report written" in err
    assert list(tmp_path.iterdir()) == []


def test_a_period_without_requests_says_so(tmp_path, state):
    page, _ = render(tmp_path, state, "--since", "2030-01-01")
    assert "No requests in this period." in "".join(page.text)
    assert page.svgs == [] and "by-model" not in page.tables


def test_filters_are_applied_and_shown(tmp_path, state):
    page, _ = render(tmp_path, state, "--account", "team", "--since", "2026-11-21")
    assert [r[:3] for r in page.body("by-model")] == [
        ["2026-11-21", "qwen3-coder-flash", "1"], ["2026-11-22", HOSTILE, "1"], ["total", "", "2"]]
    assert "account team" in "".join(page.text)
    page, _ = render(tmp_path, state, "--errors", "--model", "qwen3-coder-plus")
    assert [r[:3] + r[-2:-1] for r in page.body("by-model")] == [["2026-11-21", "qwen3-coder-plus", "2", "2"],
                                                               ["total", "", "2", "2"]]
    page, _ = render(tmp_path, state, "--since", "2026-11-23")
    assert "No requests in this period." in "".join(page.text)


def test_default_file_is_in_the_state_folder_and_a_replaced_one_is_named(tmp_path, state, monkeypatch, capsys):
    """Issue 32: the default was usage-report.html in the current folder (a checkout showed it untracked),
    replaced without a word."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert usage_cli.main(["report", "--state-dir", str(state)]) == 0
    assert capsys.readouterr().out.strip() == str(state / "usage-report.html")
    assert list(work.iterdir()) == []
    assert "qwen3-coder-flash" in (state / "usage-report.html").read_text(encoding="utf-8")
    assert stat.S_IMODE((state / "usage-report.html").stat().st_mode) == 0o600  # private, as the ledger
    assert usage_cli.main(["report", "--state-dir", str(state)]) == 0
    assert capsys.readouterr().out.strip() == f"{state / 'usage-report.html'} (it replaced the previous report)"


def test_report_only_options_are_refused_elsewhere(tmp_path, state, capsys):
    with pytest.raises(SystemExit) as e:
        usage_cli.main(["days", "--out", str(tmp_path / "x.html"), "--state-dir", str(state)])
    assert e.value.code == 2 and "--out" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        usage_cli.main(["report", "--json", "--state-dir", str(state)])
    assert e.value.code == 2 and "--json" in capsys.readouterr().err


def test_rows_are_read_with_one_plain_select(tmp_path, state, monkeypatch):
    """Portable SQL (the ledger may live on another database): one SELECT of columns with `?` placeholders,
    no SQLite function, no grouping; the sums are the report's own. The Conversations section is read by
    `qwen-usage conversations`' own query (cli/usage_conversations.py), with the same filters."""
    seen: list[tuple[str, tuple]] = []
    query = Ledger.query

    def recording(self, sql, args=()):
        seen.append((sql, args))
        return query(self, sql, args)

    monkeypatch.setattr(Ledger, "query", recording)
    render(tmp_path, state, "--account", "team", "--since", "2026-11-21", "--status", "2xx")
    (sql, args), *conversations = seen
    assert [(c.startswith("SELECT conversation, "), a[:-1]) for c, a in conversations] == [(True, args)]
    assert sql.startswith("SELECT ts, day, endpoint, model, upstream_model, account, status, error, ") and \
        " FROM usage WHERE " in sql
    assert sql.count("?") == len(args) == 4 and "team" in args
    assert not any(f in sql.upper() for f in ("STRFTIME", "JULIANDAY", "DATETIME", "IFNULL", "GROUP_CONCAT",
                                              "GROUP BY", "PRAGMA", "LIMIT"))


def test_the_page_is_written_where_o_or_output_says(tmp_path, state, capsys):
    # issue 82: `qwen-usage report -o FILE` was refused; -o and --output are --out
    for flag in ("-o", "--output"):
        out = tmp_path / f"report{flag}.html"
        assert usage_cli.main(["report", flag, str(out), "--state-dir", str(state)]) == 0
        assert capsys.readouterr().out.strip() == str(out) and "<html" in out.read_text(encoding="utf-8")
