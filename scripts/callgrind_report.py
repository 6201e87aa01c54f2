"""What a callgrind profile says (bench_hooks.py, bench_doctor_shapes.py): its instructions, and with Python's perf
trampolines (`python -X perf`: each Python function gets its own address, named in /tmp/perf-PID.map) the Python
functions by inclusive instructions."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path


def instructions(profile: Path) -> int:
    return int(re.search(r"^(?:summary|totals): (\d+)", profile.read_text(), re.M).group(1))


def python_costs(out: Path) -> dict[str, int]:
    """The Python functions of a -X perf profile, by name, with their inclusive instructions."""
    pid = re.search(r"^pid: (\d+)", out.read_text(), re.M).group(1)
    names = {}
    for line in Path(f"/tmp/perf-{pid}.map").read_text().splitlines():
        address, _, name = line.split(" ", 2)
        names[int(address, 16)] = name.removeprefix("py::")
    report = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(out)],
                            capture_output=True, text=True, check=True).stdout
    # "  1,234 (12.3%)  ???:0x000000000547c0d1'2 [???]": a trampoline, at a recursion depth ('2) or none;
    # the outermost depth holds the inclusive cost
    costs: dict[str, int] = {}
    for cost, address in re.findall(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(?:\?\?\?:)?0x([0-9a-f]+)", report, re.M):
        if int(address, 16) in names:
            name = names[int(address, 16)]
            costs[name] = max(costs.get(name, 0), int(cost.replace(",", "")))
    return costs


def python_functions(profile: Path, n: int, lines: int = 70) -> None:
    """The Python functions by inclusive instructions per request (the profile between the marks)."""
    for name, cost in sorted(python_costs(profile).items(), key=lambda kv: -kv[1])[:lines]:
        print(f"{cost / n:>12,.0f}  {name}")
