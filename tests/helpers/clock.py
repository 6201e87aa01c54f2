"""A process's realtime clock moved for real, without touching the machine's: libfaketime (Debian's `faketime`,
LD_PRELOAD) reads the offset from a file the test rewrites (tests/e2e/test_e2e_cache_expiry.py says why each
setting). The process must be started by exec (Popen), never forked from one that has not preloaded it."""

from __future__ import annotations

import glob
import time
from pathlib import Path

LIBFAKETIME = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1")
                               + glob.glob("/usr/local/lib/faketime/libfaketimeMT.so.1"))), None)
CACHE_WAIT_S = 2.5  # libfaketime's FAKETIME_CACHE_DURATION=1 (whole seconds, "more than"): a move seen from 2 s on


def faked_clock(rc: Path) -> dict[str, str]:
    """A process's environment for a realtime clock moved by rewriting `rc`: only the realtime clock (timers and
    waits run on the monotonic one), file times never."""
    return {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME_TIMESTAMP_FILE": str(rc), "FAKETIME_CACHE_DURATION": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1", "NO_FAKE_STAT": "1"}


def move_clock(rc: Path, offset_s: int) -> None:
    """The faked clock `offset_s` from the machine's (either way), as the process's next call after CACHE_WAIT_S
    sees it (the file replaced whole: libfaketime never reads half of it)."""
    tmp = rc.with_suffix(".tmp")
    tmp.write_text(f"{offset_s:+d}\n")
    tmp.chmod(0o644)
    tmp.replace(rc)
    time.sleep(CACHE_WAIT_S)
