"""The emulator's limit counters (scripts/emulator/limits.py): the windows keep their sums as they go, so a
request costs the same whether the last minute saw ten requests or fifty thousand — a benchmark's emulator
that slowed with every request it had served made every figure drift (and the earlier target pay less)."""

from __future__ import annotations

import sys
from collections import deque
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from emulator import limits  # noqa: E402

NO_LIMITS = {"plan_limits": {}, "plan_month_day": 1, "daily_limit": 0, "rpm_limit": 0, "burst_limit": 0,
             "tpm_limit": 0}


class Unwalkable(deque):
    """A window that may be appended to and trimmed, never walked: walking it is work per request that grows
    with the traffic."""

    def __iter__(self):
        raise AssertionError("a limit window was walked to count it")


@pytest.fixture
def counters(monkeypatch) -> limits.Limits:
    monkeypatch.setattr(limits, "deque", Unwalkable)
    return limits.Limits()


def test_counting_never_walks_a_window(counters):
    sw = {**NO_LIMITS, "tpm_limit": 10**9, "rpm_limit": 10**9, "burst_limit": 10**9, "plan_limits": {"5h": 10**9}}
    for i in range(2_000):
        assert counters.count("acct", sw, 3, 1_000.0 + i / 1_000) is None
    assert counters.last_minute("acct", 1_002.0) == 2_000


def test_tokens_a_minute_add_up_and_expire(counters):
    sw = {**NO_LIMITS, "tpm_limit": 100}
    assert counters.count("acct", sw, 60, 1_000.0) is None
    assert counters.count("acct", sw, 39, 1_010.0) is None
    assert counters.count("acct", sw, 5, 1_020.0) is None  # 99 before it: under the limit, counted
    assert counters.count("acct", sw, 1, 1_030.0) == "tpm"  # 104 in the minute
    assert counters.count("other", sw, 1, 1_030.0) is None  # another account's minute
    assert counters.count("acct", sw, 1, 1_060.0) is None  # the first 60 left the minute: 44
    assert counters.count("acct", sw, 1, 1_081.0) is None  # and the 39 and the 5: 2


def test_requests_a_second_and_a_minute(counters):
    sw = {**NO_LIMITS, "burst_limit": 2, "rpm_limit": 3}
    assert counters.count("acct", sw, 0, 1_000.0) is None
    assert counters.count("acct", sw, 0, 1_000.5) is None
    assert counters.count("acct", sw, 0, 1_000.9) == "burst"  # refused: not counted
    assert counters.count("acct", sw, 0, 1_001.2) is None  # the first left the second
    assert counters.count("acct", sw, 0, 1_030.0) == "throttle"  # three in the minute
    assert counters.last_minute("acct", 1_030.0) == 3
    assert counters.last_minute("acct", 1_061.2) == 0
