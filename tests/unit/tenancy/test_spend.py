"""What each named key spent this UTC day and month (tenancy/spend.py): counted in place, rolled at
UTC midnight and month, kept when a write fails, forgotten with a deleted key."""

from __future__ import annotations

import calendar

from qwen_gateway.tenancy.outage import OutageNote
from qwen_gateway.tenancy.schema import Spent
from qwen_gateway.tenancy.spend import SpendBook, next_midnight, next_month


def test_the_spend_book_counts_days_and_months_in_utc_and_keeps_what_was_not_written():
    noon = calendar.timegm((2026, 5, 31, 12, 0, 0))
    book = SpendBook()
    book.charge("k", requests=1, tokens=100, usd=0.5, now=noon)
    assert book.spent("k", noon).tokens_today == 100 and book.spent("k", noon).usd_month == 0.5
    pending = book.take_pending()
    assert list(pending) == [("k", "2026-05-31")]
    book.written(pending, ok=False)  # the database was down: kept for the next batch
    assert book.pending[("k", "2026-05-31")].tokens == 100
    tomorrow = noon + 86400  # June: a new day and a new month
    assert book.spent("k", tomorrow).tokens_today == 0 and book.spent("k", tomorrow).usd_month == 0


def test_a_deleted_keys_spend_is_forgotten_and_a_failing_write_is_said_once(caplog):
    caplog.set_level("INFO", "qwen")
    book = SpendBook()
    book.charge("gone", requests=1, tokens=10)
    book.charge("kept", requests=1, tokens=10)
    writing = book.take_pending()
    book.charge("gone", requests=1, tokens=5)
    book.forget("gone")
    assert set(book.totals) == {"kept"} and not book.pending and list(book.writing) == [k for k in writing if k[0] == "kept"]
    note = OutageNote("qwen: failing: %s", "qwen: back")
    for _ in range(5):
        note.failed(ConnectionError())
    note.worked()
    note.worked()
    assert [r.getMessage() for r in caplog.records] == ["qwen: failing: ConnectionError", "qwen: back"]


def test_midnight_and_the_first_of_the_next_month_in_utc():
    assert next_midnight(calendar.timegm((2026, 12, 31, 23, 59, 59))) == calendar.timegm((2027, 1, 1, 0, 0, 0))
    assert next_midnight(calendar.timegm((2026, 3, 1, 0, 0, 0))) == calendar.timegm((2026, 3, 2, 0, 0, 0))
    assert next_month(calendar.timegm((2026, 12, 15, 8, 0, 0))) == calendar.timegm((2027, 1, 1, 0, 0, 0))
    assert next_month(calendar.timegm((2026, 2, 28, 23, 0, 0))) == calendar.timegm((2026, 3, 1, 0, 0, 0))


def test_a_new_day_in_the_same_month_keeps_the_months_counts():
    day = calendar.timegm((2026, 5, 10, 12, 0, 0))
    book = SpendBook()
    book.charge("k", requests=2, refused=1, tokens=50, usd=1.25, plan_requests=2, plan_tokens=50, now=day)
    s = book.spent("k", day + 86400)
    assert (s.tokens_today, s.requests_today, s.refused_today) == (0, 0, 0)
    assert (s.usd_month, s.plan_requests_month, s.plan_tokens_month) == (1.25, 2, 50)


def test_what_a_failed_write_leaves_is_added_to_what_was_charged_since():
    noon = calendar.timegm((2026, 5, 31, 12, 0, 0))
    book = SpendBook()
    book.charge("k", requests=1, tokens=100, usd=0.5, now=noon)
    batch = book.take_pending()
    assert book.writing == batch and book.pending == {}
    book.charge("k", requests=1, tokens=20, now=noon + 1)
    book.written(batch, ok=False)
    d = book.pending[("k", "2026-05-31")]
    assert (d.requests, d.tokens, d.usd, d.last_used) == (2, 120, 0.5, noon + 1) and book.writing == {}
    book.written(book.take_pending(), ok=True)
    assert book.pending == {} and book.writing == {}


def test_what_the_store_says_plus_what_it_does_not_hold_yet():
    book = SpendBook()
    book.charge("k", requests=1, tokens=30)
    book.replace({"k": Spent(tokens_today=1000, requests_today=10), "other": Spent(tokens_today=5)})
    assert (book.spent("k").tokens_today, book.spent("k").requests_today) == (1030, 11)  # the batch not written yet
    assert book.spent("other").tokens_today == 5
    book.replace({}, name="other")  # one key read again: the others are left as they were
    assert book.spent("other").tokens_today == 0 and book.spent("k").tokens_today == 1030
    book.replace({})  # a full read: keys the store no longer has are gone, pending ones stay counted
    assert set(book.totals) == {"k"} and book.spent("k").tokens_today == 30
