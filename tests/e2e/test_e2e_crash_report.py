"""A gateway that crashes in native code says where: each thread's Python stack on its terminal (stderr), as
Python's faulthandler prints it — what a user pastes into a bug report (file names and lines, never a request's
data). Caused for real: SIGSEGV sent to a running mitmdump."""

from __future__ import annotations

import signal

import pytest

from helpers.procs import until

pytestmark = pytest.mark.e2e


def test_a_crash_prints_every_threads_stack(make_gateway):
    gw = make_gateway()
    gw.proc.send_signal(signal.SIGSEGV)
    until(lambda: gw.proc.poll() is not None, "the gateway's end", limit=15)
    log = until(lambda: "Fatal Python error: Segmentation fault" in gw.log() and gw.log(), "the crash report",
                limit=5)
    assert gw.proc.returncode == -signal.SIGSEGV
    assert "Current thread" in log or "Thread 0x" in log, log[-3000:]
    assert "File \"" in log  # the stack, with its files and lines
