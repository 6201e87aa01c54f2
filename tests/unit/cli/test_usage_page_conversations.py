"""The report page's Conversations section (cli/usage_page_conversations.py): the rows of `qwen-usage
conversations` (cli/usage_conversations.py, the same filters as the rest of the page) as a table under a sentence
saying what a miss is; a line instead of an empty table; every value escaped. The page is written by
`qwen-usage report` from a real ledger (SQLite, and the shared PostgreSQL one) and parsed back."""

from __future__ import annotations

import time

import pytest

from helpers.observe_testlib import exchange
from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from qwen_gateway.cache_turn import CacheTurn
from qwen_gateway.cli import usage as usage_cli
from qwen_gateway.cli.usage_page_conversations import SHOWN, section
from qwen_gateway.observe.ledger import FILENAME, Ledger, SharedLedger, row_of
from qwen_gateway.storage.pg import Database
from unit.cli.test_usage_report import Page  # the report page's parser: its tables by id, its text

A, F = "aaaa1111bbbb2222cccc3333dddd4444", "ffff0000ffff0000ffff0000ffff0000"
HEAD = ["conversation", "first seen", "turns", "1-hour turns", "prompt", "cached", "hit share", "missed turns", "lost tokens",
        "lost USD", "causes"]
HOSTILE = '<script>alert("x")</script><img src=http://127.0.0.1:1/x>&'


def turn(conversation, n, prompt, read, cause=None, lost=0, usd=None, at=0.0, account="default"):
    ex = exchange(account=account, started_at=time.time() - 100 + at, usage={
        "prompt_tokens": prompt, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": read}})
    ex.result.cache = CacheTurn(conversation, n, prompt, read, 0, cause, lost, usd)
    return row_of(ex)


ROWS = [turn(A, 1, 3000, 0, at=1), turn(A, 2, 3200, 2900, at=2),
        turn(A, 3, 3400, 0, "tool_order", 3200, 0.00256, at=3), turn(A, 4, 3600, 3300, at=4),
        turn(F, 1, 5000, 0, at=5, account="team"), turn(F, 2, 5100, 0, "system", 5000, 0.004, at=6, account="team"),
        turn(F, 3, 5200, 0, "system", 5100, 0.00408, at=7, account="team")]


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request, tmp_path):
    """(the ledger to write, the command line's way to it): the state folder's SQLite or a shared database."""
    if request.param == "sqlite":
        state = tmp_path / "state"
        state.mkdir(mode=0o700)
        led: Ledger | SharedLedger = Ledger(state / FILENAME)
        where = ["--state-dir", str(state)]
    else:
        url = request.getfixturevalue("pg_url")
        led, where = SharedLedger(Database(url)), ["--state-dir", str(tmp_path / "unused"), "--state-url", url]
    try:
        yield led, where
    finally:
        led.close()


def render(tmp_path, ledger, rows, *args: str) -> Page:
    led, where = ledger
    led.add(rows)
    out = tmp_path / "report.html"
    assert usage_cli.main(["report", "--out", str(out), *where, *args]) == 0
    return Page(out.read_text(encoding="utf-8"))


def test_the_section_has_the_conversations_rows_as_a_table(tmp_path, ledger, capsys):
    page = render(tmp_path, ledger, [*ROWS, row_of(exchange(started_at=time.time()))])  # no conversation: not listed
    table = page.tables["conversations"]
    assert table[0] == HEAD
    first_seen = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ROWS[0]["ts"]))
    assert table[1:] == [  # as `qwen-usage conversations` gives them: the newest last
        ["aaaa1111bbbb", first_seen, "4", "0", "13,200", "6,200", "47%", "1", "3,200", "$0.002560", "tool_order (turn 3)"],
        ["ffff0000ffff", table[2][1], "3", "0", "15,300", "0", "0%", "2", "10,100", "$0.008080", "system ×2 (turns 2, 3)"]]
    text = " ".join("".join(page.text).split())
    assert "a turn that read less of Qwen's cache than the turn before" in text and "docs/observability.md" in text
    assert "No conversations recorded" not in text


def test_the_pages_filters_apply(tmp_path, ledger):
    page = render(tmp_path, ledger, ROWS, "--account", "team")
    assert [r[0] for r in page.tables["conversations"][1:]] == ["ffff0000ffff"]


def test_the_newest_conversations_are_shown(tmp_path, ledger):
    rows = [turn(f"{n:032x}", 1, 100, 0, at=n) for n in range(SHOWN + 3)]
    page = render(tmp_path, ledger, rows)
    shown = [r[0] for r in page.tables["conversations"][1:]]
    assert SHOWN == 20 and shown == [f"{n:032x}"[:12] for n in range(3, SHOWN + 3)]


def test_no_conversation_rows_is_one_line_and_no_table(tmp_path, ledger):
    page = render(tmp_path, ledger, [row_of(exchange(started_at=time.time()))])
    assert "conversations" not in page.tables and "by-model" in page.tables
    assert "No conversations recorded" in "".join(page.text)


def test_values_are_escaped():
    html = section([{"conversation": HOSTILE, "first_seen": HOSTILE, "turns": 2, "hour_turns": 1, "prompt_tokens": 10,
                     "cached_tokens": 5, "hit_share": 0.5, "missed_turns": 0, "lost_tokens": 0, "lost_usd": 0.0,
                     "causes": HOSTILE}])
    assert "<script" not in html and "<img" not in html
    assert html.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=http://127.0.0.1:1/x&gt;&amp;") == 3
    page = Page(html)
    assert page.tables["conversations"][1] == [HOSTILE, HOSTILE, "2", "1", "10", "5", "50%", "0", "0", "$0", HOSTILE]


def test_no_rows_is_a_line():
    html = section([])
    assert "<table" not in html and 'id="no-conversations"' in html and "No conversations recorded" in html
