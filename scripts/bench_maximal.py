"""The maximal cases the test suite no longer runs (issue 68 item 6: a suite that holds at a third of the speed),
measured through a real mitmdump and the emulator, with the figures the tests used to print:

- `uploads`: four batch files of Model Studio's maximum (50,000 chat lines, about 8.3 MB each) uploaded at once;
- `refusal`: a batch file of 180,000 lines (30 MB, within the body limit), refused before any line is translated.

For each: how long the answer took, the longest answer of a client timing the liveness probe meanwhile, the event
loop's own lateness from inside (tests/helpers/looplag.py: how late its timer woke, and how much of that the loop's
thread spent running), the gateway's RSS growth. The suite checks the same behaviour by counting work on smaller
files (tests/e2e/test_e2e_batch_files.py); these figures are measurements, and a busy machine changes them.

    .venv/bin/python scripts/bench_maximal.py            # both, about a minute on a quiet 2-core machine
    .venv/bin/python scripts/bench_maximal.py uploads --json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402

from e2e.test_e2e_attacks import rss_mb  # noqa: E402
from e2e.test_e2e_batch_files import MAX_LINES, maximal_file, uploads  # noqa: E402
from e2e.test_e2e_batches import payg_env  # noqa: E402
from e2e.test_e2e_large_inputs import HELPERS, Lateness, LoopProbe  # noqa: E402
from helpers.procs import Emulator, Gateway, start_emulator  # noqa: E402
from helpers.team import openai_client  # noqa: E402

REFUSED_LINES = 180_000


def measured(tmp: Path, emu: Emulator, name: str) -> tuple[Gateway, Path]:
    """A gateway on a pay-as-you-go key account whose event loop's lateness is recorded (helpers/looplag.py)."""
    env = payg_env(tmp / name, emu)
    lag = tmp / name / "looplag.txt"
    gw = Gateway(tmp / name / "gw", env={**env, "QWEN_TEST_LOOPLAG": str(lag)},
                 args=("-s", str(HELPERS / "looplag.py")), fork=False).start()
    return gw, lag


def four_uploads(tmp: Path, emu: Emulator) -> dict:
    gw, lag = measured(tmp, emu, "uploads")
    try:
        c = openai_client(gw.url, "client-key").with_options(timeout=600)
        c.files.create(file=("warm.jsonl", maximal_file(100, "w")), purpose="batch")  # the first upload's imports
        data = [maximal_file(tag=f"u{n}-") for n in range(4)]
        assert gw.proc is not None
        before = rss_mb(gw.proc.pid)
        made: list = []
        probe = LoopProbe(gw.url)
        time.sleep(0.3)
        start = time.monotonic()
        threads = [threading.Thread(target=lambda d=d: made.append(c.files.create(file=("in.jsonl", d),
                                                                                   purpose="batch"))) for d in data]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        took = time.monotonic() - start
        longest = probe.stop()
        late = Lateness(lag, start, start + took)
        assert len(made) == 4 and len(uploads(emu)) == 5, "the four uploads were not all taken"
        return {"lines": MAX_LINES, "mb_each": round(len(data[0]) / 1e6, 1), "answered_s": round(took, 2),
                "probe_longest_ms": round(longest * 1000), "probe_answers": probe.count,
                "loop_late_ms": round(late.late * 1000), "loop_busy_ms": round(late.busy * 1000),
                "rss_growth_mb": round(rss_mb(gw.proc.pid) - before)}
    finally:
        gw.stop()


def refusal(tmp: Path, emu: Emulator) -> dict:
    gw, lag = measured(tmp, emu, "refusal")
    try:
        data = maximal_file(REFUSED_LINES)
        probe = LoopProbe(gw.url)
        time.sleep(0.3)
        start = time.monotonic()
        r = httpx.post(gw.url + "/v1/files", files={"file": ("huge.jsonl", data)}, data={"purpose": "batch"},
                       trust_env=False, timeout=600)
        took = time.monotonic() - start
        longest = probe.stop()
        late = Lateness(lag, start, start + took)
        assert r.status_code == 400 and r.json()["error"]["code"] == "too_many_requests", r.text[:300]
        return {"lines": REFUSED_LINES, "mb": round(len(data) / 1e6, 1), "status": r.status_code,
                "answered_s": round(took, 2), "probe_longest_ms": round(longest * 1000),
                "loop_late_ms": round(late.late * 1000), "loop_busy_ms": round(late.busy * 1000)}
    finally:
        gw.stop()


SCENARIOS = {"uploads": four_uploads, "refusal": refusal}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", nargs="?", choices=[*SCENARIOS, "all"], default="all")
    ap.add_argument("--json", action="store_true", help="print JSON instead of lines")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="qwen-bench-maximal-"))
    emu = start_emulator(tmp)
    out: dict[str, dict] = {}
    try:
        for name, run in SCENARIOS.items():
            if args.scenario in (name, "all"):
                emu.reset()
                out[name] = run(tmp, emu)
    finally:
        emu.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for name, figures in out.items():
            print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
