"""Where the gateway's CPU goes under load (scripts/bench.py profile): py-spy samples the gateway and bare
mitmdump, each driven by wrk at concurrency 16 with the same small chat request (bare mitmdump sends what the
gateway sends upstream), and the samples are summed by where they were taken: the gateway's hooks, its
observers, its engine, JSON, mitmproxy's own layers and hook dispatch, the event loop, the garbage collector,
and the threads. A sample counts for every part on its stack (parts nest: the gateway's hooks include the
engine), so the shares are inclusive; `self` shares (the innermost frame) add up to 100 %.

py-spy (PyPI `py-spy`) must be installed in the venv; it samples another process, which needs ptrace rights
(root, or kernel.yama.ptrace_scope 0). QWEN_BENCH_KEYS and QWEN_BENCH_PG profile those gateways too (as `floor`
starts them); QWEN_BENCH_PROFILE_DIR=DIR keeps each target's raw samples there (py-spy's `raw` format).
Nothing here asserts: it measures.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
from pathlib import Path

from bench_floor import Target, floor_targets, wrk
from benchlib import BIN, Procs

# (part, substrings of a frame "function (file:line)"; a sample counts for the part when one frame matches)
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("gateway: any of its frames", ("gateway/",)),
    ("gateway: requestheaders hook", ("QwenGateway.requestheaders (",)),
    ("gateway: request hook (with the engine, for a whole answer)", ("QwenGateway.request (",)),
    ("gateway: engine (upstream/engine.py)", ("gateway/upstream/engine.py",)),
    ("gateway: upstream client (upstream/client.py)", ("gateway/upstream/client.py",)),
    ("gateway: request to Qwen's shape (upstream/dashscope)", ("gateway/upstream/dashscope/",)),
    ("gateway: client dialect (api/)", ("gateway/api/",)),
    ("gateway: response hook (turn/settlement.py)", ("QwenGateway.response (",)),
    ("gateway: recording observers' finished, in batches (dispatch.Observers._tell)", ("Observers._tell (",)),
    ("gateway: metrics", ("gateway/observe/metrics.py",)),
    ("gateway: request line", ("gateway/observe/requestlog.py",)),
    ("gateway: usage ledger (on the loop)", ("gateway/observe/ledger.py",)),
    ("gateway: token estimate", ("gateway/observe/estimator.py", "gateway/tokens.py")),
    ("gateway: mitmweb summary", ("gateway/mitmweb/",)),
    ("gateway: Exchange record (exchange.py)", ("gateway/exchange.py",)),
    ("gateway: account pool (upstream/pool/, auth/)", ("gateway/upstream/pool/", "gateway/auth/")),
    ("gateway: named keys (tenancy/)", ("gateway/tenancy/",)),
    ("gateway: PostgreSQL (psycopg)", ("psycopg/", "gateway/storage/pg.py")),
    ("gateway: client body check (api/request_schema.py)", ("gateway/api/request_schema.py",)),
    ("JSON (json, orjson, jsonio)", ("json/", "gateway/jsonio.py")),
    ("mitmproxy: hook dispatch (addonmanager)", ("mitmproxy/addonmanager.py",)),
    ("mitmproxy: HTTP layers", ("mitmproxy/proxy/layers/",)),
    ("mitmproxy: server (connection handling)", ("mitmproxy/proxy/server.py",)),
    ("logging", ("logging/__init__.py",)),
    ("event loop (asyncio)", ("asyncio/",)),
)


def collapsed(path: Path) -> collections.Counter:
    """py-spy's raw format: `frame;frame;... count` per line, root first."""
    stacks: collections.Counter = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            stacks[stack] += int(n)
    return stacks


def shares(stacks: collections.Counter) -> dict[str, float]:
    total = sum(stacks.values()) or 1
    out: dict[str, float] = {}
    for part, needles in PARTS:
        n = sum(c for s, c in stacks.items() if any(needle in s for needle in needles))
        out[part] = round(100 * n / total, 1)
    threads: collections.Counter = collections.Counter()
    for s, c in stacks.items():
        threads[s.split(";", 1)[0]] += c  # with --threads the root frame names the thread
    for name, c in threads.most_common(4):
        out[f"thread {name}"] = round(100 * c / total, 1)
    return out


def top_self(stacks: collections.Counter, n: int = 15) -> list[tuple[str, float]]:
    total = sum(stacks.values()) or 1
    own: collections.Counter = collections.Counter()
    for s, c in stacks.items():
        own[s.rsplit(";", 1)[-1]] += c
    return [(frame, round(100 * c / total, 1)) for frame, c in own.most_common(n)]


def bench_profile(seconds: int) -> list[dict]:
    spy = BIN / "py-spy"
    if not spy.exists():
        raise SystemExit("bench.py profile needs py-spy in the venv (.venv/bin/pip install py-spy)")
    with Procs() as p:
        emu = p.emulator()
        try:
            # the floor's targets (QWEN_BENCH_KEYS, _PG: those gateways too), but no baseline checkout
            targets = [t for t in floor_targets(p, emu) if t.proc != "baseline"]
            return _profile(p, spy, targets, seconds)
        finally:
            server = getattr(p, "pg", None)
            if server is not None:
                p.__exit__()  # the gateways first: they hold connections to the server
                server.stop()


def _profile(p: Procs, spy: Path, targets: list[Target], seconds: int) -> list[dict]:
    results = []
    keep = os.environ.get("QWEN_BENCH_PROFILE_DIR")
    for t in targets:
        wrk(t.url, t.script, 16, 2)  # warm
        out = p.tmp / f"{t.proc}.spy"
        spying = subprocess.Popen([str(spy), "record", "--pid", str(p.pids[t.proc]), "--rate", "250", "--threads",
                                   "--nonblocking", "--format", "raw", "--duration", str(seconds + 1), "--output",
                                   str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu0 = p.cpu_s(t.proc)
        got = wrk(t.url, t.script, 16, seconds)
        cpu = (p.cpu_s(t.proc) - cpu0) * 1000 / got["requests"]
        spying.wait(seconds + 60)
        stacks = collapsed(out)
        if keep:  # QWEN_BENCH_PROFILE_DIR: the raw samples, for a flame graph or a closer look
            shutil.copy(out, Path(keep) / out.name)
        results.append({"scenario": f"profile: {t.name}, wrk at concurrency 16 for {seconds} s, "
                                    f"{sum(stacks.values())} samples, {cpu:.3f} ms of CPU per request "
                                    "(inclusive shares of the samples, %)",
                        "results": {k: {"share_%": v} for k, v in shares(stacks).items()}})
        results.append({"scenario": f"profile: {t.name}, the innermost frames (self, %)",
                        "results": {frame: {"self_%": v} for frame, v in top_self(stacks)}})
    return results
