"""`bench.py instructions`: CPU instructions per request (valgrind's callgrind) of the gateway and of the floor
(bare mitmdump with the gateway's hook dispatch alone, scripts/floor_dispatch.py), the whole mitmdump process
(its threads included), and what they cost beyond the instructions: callgrind's simulation of the caches and
the branch predictor. Counts do not depend on the machine's load, where wall-clock figures do.

Each target runs under `valgrind --tool=callgrind --cache-sim=yes --branch-sim=yes` with collection off; after
warm-up requests (one client, one keep-alive connection) `callgrind_control` zeroes the counters, N requests go
through, and the dump's totals divided by N are the figures. The simulated last level is this machine's L2
(1 MiB a core; the L3 behind it is 32 MiB): an instruction or a datum missed there comes from the L3, ~40
cycles away. `cycles` is callgrind's estimate, Ir + 10 × (L1 misses + mispredicted branches) + 100 × L2
misses — the same instructions run slower when their code and data do not stay in the L2 between requests,
which the instruction count alone does not see (docs/performance.md).

The floor is sent what the gateway sends upstream (bench_http.as_sent_upstream), so the emulator's work is the
same and the difference is the proxies' own. QWEN_BENCH_BASELINE=DIR adds another checkout's gateway (its own
.venv and addons/qwen.py). QWEN_BENCH_L2="size,ways,line" simulates another L2: run at a few sizes, the
misses fall to nothing once a request's code and data fit, which measures that footprint.
QWEN_BENCH_CALLGRIND_DIR=DIR keeps each target's dump there (`callgrind_annotate --show=Ir,DLmr,DLmw` says which
functions miss). QWEN_BENCH_STREAM=1 sends streamed chat requests (with their usage chunk) instead of whole ones:
the stream's path, event by event. Needs valgrind (apt: valgrind).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx

from bench_floor import DISPATCH_ONLY
from bench_http import CHAT, Req, as_sent_upstream, chat
from benchlib import Procs, revision

WARM = 40
L1 = "32768,8,64"  # this machine's L1 (instructions and data: 32 KiB, 8-way, 64-byte lines)
# its L2, simulated as the last level (1 MiB a core, 16-way); QWEN_BENCH_L2 another ("size,ways,line", e.g.
# 2097152,16,64): where the misses stop says how much a request touches (docs/performance.md)
L2 = os.environ.get("QWEN_BENCH_L2", "1048576,16,64")
STREAM = os.environ.get("QWEN_BENCH_STREAM") == "1"
STREAMED = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
EVENTS = {"Ir": "instructions", "L1m": "L1 misses", "L2m": "L2 misses (code)", "L2dm": "L2 misses (data)",
          "Bm": "mispredicted branches"}


class CallgrindProcs(Procs):
    """Procs whose next process starts under callgrind (collection off until `callgrind_control -i on`)."""

    out: str | None = None

    def _spawn(self, cmd: list[str], name: str, env: dict | None = None):
        if self.out is not None:
            cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--cache-sim=yes", "--branch-sim=yes",
                   f"--I1={L1}", f"--D1={L1}", f"--LL={L2}", f"--callgrind-out-file={self.out}", *cmd]
            self.out = None
        return super()._spawn(cmd, name, env)


def _per_request(p: CallgrindProcs, name: str, url: str, req: Req, n: int) -> dict[str, float]:
    pid = str(p.pids[name])
    with httpx.Client(trust_env=False, timeout=120, headers=req[1]) as c:
        for _ in range(WARM):
            c.post(url + req[0], content=req[2]).raise_for_status()
        subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
        for _ in range(WARM // 4):  # code instrumented from now on: its first runs are not counted either
            c.post(url + req[0], content=req[2]).raise_for_status()
        subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
        for _ in range(n):
            c.post(url + req[0], content=req[2]).raise_for_status()
        time.sleep(0.5)  # the observers that run after the answer has gone out
        subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
    dump = max(glob.glob(str(p.tmp / f"cg.{name}.out") + "*"), key=os.path.getmtime)
    if keep := os.environ.get("QWEN_BENCH_CALLGRIND_DIR"):  # the dump, for callgrind_annotate (by function)
        shutil.copy(dump, Path(keep) / f"cg.{name}.out")
    return {k: v / n for k, v in totals(Path(dump).read_text()).items()}


def totals(dump: str) -> dict[str, int]:
    """A callgrind dump's totals as the figures above (its events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw Bc
    Bcm Bi Bim)."""
    names = re.search(r"^events: (.*)$", dump, re.M).group(1).split()
    got = dict(zip(names, map(int, re.search(r"^(?:summary|totals): (.*)$", dump, re.M).group(1).split())))
    out = {"Ir": got["Ir"], "L1m": got["I1mr"] + got["D1mr"] + got["D1mw"], "L2m": got["ILmr"],
           "L2dm": got["DLmr"] + got["DLmw"], "Bm": got["Bcm"] + got["Bim"]}
    out["cycles"] = out["Ir"] + 10 * (out["L1m"] + out["Bm"]) + 100 * (out["L2m"] + out["L2dm"])
    return out


def bench_instructions(n: int = 300) -> dict:
    measured: dict[str, dict[str, float]] = {}
    baseline = os.environ.get("QWEN_BENCH_BASELINE")
    with CallgrindProcs() as p:
        emu = p.emulator()
        client = chat("client-key-ignored", STREAMED if STREAM else CHAT)
        upstream = as_sent_upstream(emu, p.gateway(emu, "gw0"), client)
        p.out = str(p.tmp / "cg.floor.out")
        measured["floor (mitmdump + hook dispatch)"] = _per_request(
            p, "floor", p.mitmdump("floor", emu, addon=False, args=("-s", str(DISPATCH_ONLY))), upstream, n)
        p.out = str(p.tmp / "cg.gateway.out")
        measured["gateway"] = _per_request(p, "gateway", p.gateway(emu, "gateway"), client, n)
        if baseline:
            p.out = str(p.tmp / "cg.baseline.out")
            measured[f"gateway at {revision(Path(baseline))} (baseline)"] = _per_request(
                p, "baseline", p.gateway(emu, "baseline", checkout=Path(baseline)), client, n)
    floor = measured["floor (mitmdump + hook dispatch)"]
    results = {name: {**{EVENTS.get(k, k): round(v) for k, v in m.items()},
                      "vs_floor (instructions)": round(floor["Ir"] / m["Ir"], 3),
                      "vs_floor (cycles)": round(floor["cycles"] / m["cycles"], 3)} for name, m in measured.items()}
    return {"scenario": f"per request (callgrind with caches and branches simulated, L2 {L2}, {n} sequential "
                        f"{'streamed' if STREAM else 'whole'} chat requests)", "results": results}
