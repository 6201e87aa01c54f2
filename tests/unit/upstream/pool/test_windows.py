"""When a quota window ends (upstream/pool/windows.py): Monday 00:00 and a month's subscription day at UTC+8, hours for the
5-hour and usage windows. The pool cooling accounts by window: tests/unit/upstream/pool/test_affinity.py."""

from __future__ import annotations

import calendar
import time

from hypothesis import given
from hypothesis import strategies as st

from qwen_gateway.accounts import Window
from qwen_gateway.upstream.pool.windows import (next_monday_utc8, next_month_day_utc8, quota_error, quota_until, throttle_error,
                                       throttle_wait, window_of)

UTC8 = 8 * 3600


@given(st.floats(min_value=1e9, max_value=4e9))
def test_window_ends(now):
    monday = next_monday_utc8(now)
    assert now < monday <= now + 7 * 86400 and time.gmtime(monday + UTC8).tm_wday == 0 and (monday + UTC8) % 86400 == 0
    for day in (1, 15, 31):
        end = next_month_day_utc8(now, day)
        t = time.gmtime(end + UTC8)
        assert now < end <= now + 32 * 86400 and (end + UTC8) % 86400 == 0
        assert t.tm_mday == min(day, calendar.monthrange(t.tm_year, t.tm_mon)[1])
    assert quota_until(Window.FIVE_HOURS, now) == now + 5 * 3600 and quota_until(Window.USAGE, now) == now + 3600


def test_a_mondays_own_quota_runs_out_until_the_next_monday():
    monday_noon_utc8 = calendar.timegm((2026, 6, 1, 4, 0, 0))  # Monday 12:00 at UTC+8
    assert next_monday_utc8(monday_noon_utc8) == calendar.timegm((2026, 6, 7, 16, 0, 0))  # Mon 8 June 00:00 UTC+8


def test_a_subscription_day_past_the_months_end_is_its_last_day():
    jan_31 = calendar.timegm((2026, 1, 31, 0, 0, 0))  # 08:00 at UTC+8, after the 31st began
    assert next_month_day_utc8(jan_31, 31) == calendar.timegm((2026, 2, 27, 16, 0, 0))  # 28 Feb 00:00 UTC+8


def test_other_windows_end_at_the_daily_reset():
    now = calendar.timegm((2026, 6, 1, 10, 0, 0))
    assert quota_until(Window.DAY, now, reset_hour_utc=16) == calendar.timegm((2026, 6, 1, 16, 0, 0))
    assert quota_until(None, now) == calendar.timegm((2026, 6, 2, 0, 0, 0))


def test_a_throttle_waits_retry_after_at_most_30_s_else_doubles():
    assert throttle_wait(5, None) == 5 and throttle_wait(600, 4) == 30 and throttle_wait(0, 8) == 0
    assert [throttle_wait(None, p) for p in (None, 1, 2, 16, 30)] == [1, 2, 4, 30, 30]


def test_what_the_accounts_last_error_says_and_reads_back():
    until = calendar.timegm((2026, 6, 1, 16, 0, 0))
    quota = quota_error(Window.WEEK, "weekly limit reached", until)
    assert quota == ('quota exhausted: Coding Plan weekly quota, back at 2026-06-01T16:00:00Z '
                     '(Qwen said: "weekly limit reached")')
    assert quota_error(None, None, until) == "quota exhausted"
    assert throttle_error(Window.TPM, "slow") == 'throttled: tokens per minute (TPM) (Qwen said: "slow")'
    assert throttle_error(None, "slow") == "throttled"  # no window: Qwen's words are not shown
    assert (window_of(quota), window_of(throttle_error(Window.TPM, None)), window_of("throttled"), window_of(None)) \
        == ("week", "tpm", None, None)
