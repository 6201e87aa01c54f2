"""Log lines for events that come in storms (log_tally.py): the first at once, then one line per period with its
count; nothing hidden."""

from __future__ import annotations

import asyncio
import logging

from qwen_gateway.log_tally import LogTally, Once


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_tally_logs_the_first_event_and_then_one_count_per_period(caplog):
    clock = Clock()
    tally = LogTally(logging.getLogger("qwen.test"), period=10, clock=clock)
    with caplog.at_level(logging.INFO, logger="qwen.test"):
        tally.note("k", lambda n: f"{n} events")
        for _ in range(500):
            tally.note("k", lambda n: f"{n} events")
        assert caplog.messages == ["1 events"]  # no loop: nothing flushed before the period ends
        clock.now += 10
        tally.note("k", lambda n: f"{n} events", count=4)  # the period is over: its count goes out
        tally.note("other", lambda n: f"{n} others")
        tally.close()
    assert caplog.messages == ["1 events", "504 events", "1 others"]


async def test_the_tally_flushes_a_count_when_its_period_ends(caplog):
    tally = LogTally(logging.getLogger("qwen.test"), period=0.05)
    with caplog.at_level(logging.INFO, logger="qwen.test"):
        for _ in range(3):
            tally.note("k", lambda n: f"{n} events")
        for _ in range(50):  # at most 1 s
            if len(caplog.messages) == 2:
                break
            await asyncio.sleep(0.02)
    assert caplog.messages == ["1 events", "2 events"]


def test_a_quiet_kind_logs_its_next_event_at_once_and_close_writes_what_is_counted(caplog):
    clock = Clock()
    tally = LogTally(logging.getLogger("qwen.test"), period=10, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="qwen.test"):
        tally.note("k", lambda n: f"{n} k")
        clock.now += 11  # a whole quiet period: the next event is a first again
        tally.note("k", lambda n: f"{n} k")
        tally.note("k", lambda n: f"{n} k at debug", level=logging.DEBUG, count=2)  # the latest line and level win
        tally.close()
    assert caplog.messages == ["1 k", "1 k", "2 k at debug"]
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.WARNING, logging.DEBUG]


def test_once_says_a_line_once_per_period_and_forgets_the_oldest_key():
    clock = Clock()
    once = Once(period=60, kept=2, clock=clock)
    assert [once.due("a"), once.due("a"), once.due("b")] == [True, False, True]
    clock.now += 60
    assert once.due("a")  # its period is over
    assert once.due("c")  # a third key: "b", the oldest, is forgotten
    assert once.due("b") and not once.due("c")
