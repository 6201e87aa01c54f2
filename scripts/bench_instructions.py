"""`bench.py instructions`: CPU instructions per request (valgrind's callgrind) of the gateway and of the floor
(bare mitmdump with the gateway's hook dispatch alone, scripts/floor_dispatch.py), the whole mitmdump process
(its threads included). Instruction counts do not depend on the machine's load, where wall-clock figures do.

Each target runs under `valgrind --tool=callgrind` with collection off; after warm-up requests (one client, one
keep-alive connection) `callgrind_control` zeroes the counters, N requests go through, and the dump's total
divided by N is the figure. The floor is sent what the gateway sends upstream (bench_http.as_sent_upstream),
so the emulator's work is the same and the difference is the proxies' own. Needs valgrind (apt: valgrind).
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import time

import httpx

from bench_floor import DISPATCH_ONLY
from bench_http import CHAT, Req, as_sent_upstream, chat
from benchlib import Procs

WARM = 40


class CallgrindProcs(Procs):
    """Procs whose next process starts under callgrind (collection off until `callgrind_control -i on`)."""

    out: str | None = None

    def _spawn(self, cmd: list[str], name: str, env: dict | None = None):
        if self.out is not None:
            cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={self.out}", *cmd]
            self.out = None
        return super()._spawn(cmd, name, env)


def _per_request(p: CallgrindProcs, name: str, url: str, req: Req, n: int) -> float:
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
    with open(dump) as f:
        total = int(re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M).group(1))
    return total / n


def bench_instructions(n: int = 300) -> dict:
    results: dict[str, dict] = {}
    with CallgrindProcs() as p:
        emu = p.emulator()
        client = chat("client-key-ignored", CHAT)
        upstream = as_sent_upstream(emu, p.gateway(emu, "gw0"), client)
        p.out = str(p.tmp / "cg.gateway.out")
        gateway = _per_request(p, "gateway", p.gateway(emu, "gateway"), client, n)
        p.out = str(p.tmp / "cg.floor.out")
        floor = _per_request(p, "floor", p.mitmdump("floor", emu, addon=False, args=("-s", str(DISPATCH_ONLY))),
                             upstream, n)
    results["floor (mitmdump + hook dispatch)"] = {"instructions_per_request": round(floor), "vs_floor": 1.0}
    results["gateway"] = {"instructions_per_request": round(gateway), "vs_floor": round(floor / gateway, 3)}
    return {"scenario": f"instructions per request (callgrind, {n} sequential whole chat requests)",
            "results": results}
