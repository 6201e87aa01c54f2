"""A write failing every second while its storage is away is said once, and once more when it works again
(tenancy/outage.py)."""

from __future__ import annotations

import logging

from qwen_gateway.tenancy.outage import OutageNote


def test_one_line_when_it_starts_failing_and_one_when_it_is_back(caplog):
    note = OutageNote("qwen: spend not written (%s)", "qwen: spend written again")
    with caplog.at_level(logging.INFO, logger="qwen"):
        note.worked()  # working all along: nothing to say
        for _ in range(5):
            note.failed(ConnectionError("db gone"))
        note.worked()
        note.worked()
        note.failed(TimeoutError())
    assert caplog.messages == ["qwen: spend not written (ConnectionError)", "qwen: spend written again",
                               "qwen: spend not written (TimeoutError)"]
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.INFO, logging.WARNING]
