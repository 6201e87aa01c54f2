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
