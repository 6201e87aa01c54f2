"""days.py: the UTC day requests and a key's spend are counted on."""

from __future__ import annotations

import time

import pytest

from qwen_gateway import days


@pytest.mark.parametrize("now", [0.0, 86399.999, 86400.0, 1795503429.5, 1798761599.9])
def test_the_utc_day_of_now_and_of_a_time(monkeypatch, now):
    monkeypatch.setattr(time, "time", lambda: now)
    assert days.utc_day() == time.strftime("%Y-%m-%d", time.gmtime(now))
    assert days.utc_day(now + 86400) == time.strftime("%Y-%m-%d", time.gmtime(now + 86400))


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/Sao_Paulo", "Pacific/Apia", "Asia/Kolkata"])
def test_the_local_day_of_times_around_midnights_and_clock_changes(monkeypatch, zone):
    """Formatted once a day: the same answer as strftime(localtime) at every second near the day's edges,
    around daylight-saving changes and a zone that skipped a whole day (Apia, 2011-12-30)."""
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    monkeypatch.setattr(days, "_local", (0.0, 0.0, ""))
    try:
        edges = [time.mktime((y, m, d, 0, 0, 0, 0, 0, -1)) for y, m, d in
                 ((2026, 3, 29), (2026, 10, 25), (2026, 11, 1), (2026, 3, 8), (2011, 12, 29), (2011, 12, 31))]
        for edge in edges:
            for ts in [edge + k * 0.5 for k in range(-8, 9)] + [edge + 3600 * h for h in range(-3, 27)]:
                assert days.local_day(ts) == time.strftime("%Y-%m-%d", time.localtime(ts)), (zone, ts)
        # asked per request within one day, the C library's formatting ran once
        calls = []
        real = time.strftime
        monkeypatch.setattr(time, "strftime", lambda *a: calls.append(a) or real(*a))
        noon = time.mktime((2026, 11, 24, 12, 0, 0, 0, 0, -1))
        assert {days.local_day(noon + s) for s in range(0, 600)} == {real("%Y-%m-%d", time.localtime(noon))}
        assert len(calls) == 1
    finally:
        monkeypatch.undo()  # the zone the process had, and the cached day of the zone above dropped
        time.tzset()
