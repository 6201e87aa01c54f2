"""heap.py: after a large request, one trim of the C heap by a worker thread, however many large requests ended
together; none after a small one (issue 79 item 6)."""

from __future__ import annotations

import asyncio
import threading

from qwen_gateway import heap


async def test_one_trim_after_the_large_requests_that_ended_together_none_after_a_small_one(monkeypatch):
    monkeypatch.setattr(heap, "TRIM_AFTER_S", 0.01)
    calls = []
    trimmer = heap.Trimmer(trim=lambda pad: calls.append((pad, threading.get_ident())))
    trimmer.ended(heap.TRIM_BODY - 1)
    await asyncio.sleep(0.1)
    assert calls == []
    trimmer.ended(heap.TRIM_BODY)
    trimmer.ended(8 * heap.TRIM_BODY)
    for _ in range(100):
        if calls:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)
    assert [pad for pad, _ in calls] == [0] and calls[0][1] != threading.get_ident() and trimmer.trims == 1


def test_the_system_trim_is_found_where_glibc_runs_the_gateway():
    assert heap.Trimmer()._trim is not None  # this machine's libc is glibc; on musl there is nothing to call


def test_finding_the_trim_starts_no_process(monkeypatch):
    """`ctypes.util.find_library` runs `ldconfig -p` (a fork of the whole gateway) each time it is asked: the
    C library the process already runs is asked instead, once."""
    import subprocess

    started = []
    monkeypatch.setattr(subprocess.Popen, "__init__", lambda self, *a, **kw: started.append(a) or 1 / 0)
    assert heap.Trimmer()._trim is not None and heap.Trimmer()._trim is not None
    assert started == []


async def test_the_trim_waits_for_the_requests_own_work_still_running(monkeypatch):
    """A busy machine (the suite beside stress-ng): the request's print and count on worker threads were not done
    TRIM_AFTER_S after it ended; the trim ran before they freed what they held, which then stayed resident."""
    monkeypatch.setattr(heap, "TRIM_AFTER_S", 0.01)
    calls = []
    trimmer = heap.Trimmer(trim=lambda pad: calls.append(pad))
    printing = asyncio.get_running_loop().create_future()
    trimmer.ended(heap.TRIM_BODY, (printing, None))
    await asyncio.sleep(0.2)
    assert calls == []  # its print still in the making
    printing.set_result(None)
    for _ in range(100):
        if calls:
            break
        await asyncio.sleep(0.02)
    assert calls == [0] and trimmer.trims == 1
