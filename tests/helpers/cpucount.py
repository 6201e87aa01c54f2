"""Each test's CPU, every process it started counted: `QWEN_TEST_CPU=<file> bash scripts/test.sh`.

The suite is CPU-bound on two cores (four workers keep both busy), so what a test costs the run is the CPU of its
whole process tree — its gateways, emulators, clients, databases — not its wall time, which waits on the others.
Each xdist worker moves itself into a cpuacct cgroup of its own (v1: /sys/fs/cgroup/cpuacct/qwen-tests/gwN;
needs root), which every process it then starts joins, and reads the group's usage before and after each test.
A worker appends one JSON line a test to `<file>.<worker>.jsonl`: the test, its tree's CPU seconds, its worker's own,
its wall seconds. `python tests/helpers/cpucount.py <file>` merges them and prints the CPU by file.

Where no such cgroup can be made (not root, no cpuacct hierarchy), nothing is measured and the run says so once."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup/cpuacct/qwen-tests")


class CpuCount:
    """One worker's account: its cgroup, and the file it writes a line to per test."""

    def __init__(self, out: str, worker: str, root: Path = ROOT) -> None:
        self.group = root / worker
        self.group.mkdir(parents=True, exist_ok=True)
        (self.group / "cgroup.procs").write_text(str(os.getpid()))  # the whole process, every thread
        self.out = open(f"{out}.{worker}.jsonl", "a", buffering=1)
        self._began: tuple[float, float, float] | None = None

    def usage(self) -> float:
        return int((self.group / "cpuacct.usage").read_text()) / 1e9

    def begin(self) -> None:
        times = os.times()
        self._began = (self.usage(), times.user + times.system, time.monotonic())

    def end(self, nodeid: str) -> None:
        assert self._began is not None
        tree, own, wall = self._began
        times = os.times()
        self.out.write(json.dumps({"test": nodeid, "cpu": round(self.usage() - tree, 3),
                                   "own": round(times.user + times.system - own, 3),
                                   "wall": round(time.monotonic() - wall, 3)}) + "\n")


def start(out: str, worker: str, root: Path = ROOT) -> CpuCount | None:
    """The worker's account, or None (and why, on stderr) where no cgroup of its own can be made."""
    try:
        return CpuCount(out, worker, root)
    except OSError as e:
        print(f"QWEN_TEST_CPU: no cpuacct cgroup for {worker} ({e}): no CPU counted", file=sys.stderr)
        return None


def by_file(rows: list[dict]) -> list[tuple[str, int, float, float]]:
    """(file, tests, CPU s of their trees, wall s), the costliest first."""
    files: dict[str, list[float]] = {}
    for row in rows:
        tally = files.setdefault(row["test"].split("::")[0], [0, 0.0, 0.0])
        tally[0] += 1
        tally[1] += row["cpu"]
        tally[2] += row["wall"]
    return sorted(((f, int(n), cpu, wall) for f, (n, cpu, wall) in files.items()), key=lambda t: -t[2])


def read(out: str) -> list[dict]:
    return [json.loads(line) for part in sorted(Path(out).parent.glob(Path(out).name + ".*.jsonl"))
            for line in part.read_text().splitlines()]


if __name__ == "__main__":
    rows = read(sys.argv[1])
    print(f"{len(rows)} tests, {sum(r['cpu'] for r in rows):.0f} s of CPU")
    for name, count, cpu, _wall in by_file(rows)[:int(sys.argv[2]) if len(sys.argv) > 2 else 40]:
        print(f"{cpu:8.1f} {count:5d}  {name}")
