"""Benchmarks, all in one run against the emulator: direct, bare mitmdump, and the gateway.

    .venv/bin/python scripts/bench.py stream      # time to first chunk and gap fidelity of a 2 s stream
    .venv/bin/python scripts/bench.py stream --json

Results are recorded in docs/performance.md. Nothing here asserts: it measures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import Procs, machine  # noqa: E402


def _stream_once(client: httpx.Client, url: str, key: str) -> tuple[float, list[float]]:
    """(seconds to the first chunk, arrival times of every chunk but [DONE]) for one streamed chat."""
    body = {"model": "qwen3-coder-plus", "stream": True,
            "messages": [{"role": "user", "content": " ".join(f"w{i}" for i in range(40))}]}
    t0 = time.perf_counter()
    arrivals: list[float] = []
    buf = b""
    with client.stream("POST", url + "/v1/chat/completions", json=body,
                       headers={"authorization": f"Bearer {key}"}) as r:
        r.raise_for_status()
        for raw in r.iter_raw():
            now = time.perf_counter() - t0
            buf += raw
            *events, buf = buf.split(b"\n\n")
            arrivals += [now for e in events if e.strip().startswith(b"data:") and b"[DONE]" not in e]
    return arrivals[0], arrivals


def bench_stream(runs: int, gap_ms: int) -> dict:
    with Procs() as p:
        emu = p.emulator()
        httpx.post(emu + "/_emulator/switches", json={"gap_ms": gap_ms, "reasoning": False},
                   trust_env=False).raise_for_status()
        targets = {"direct": (emu, "sk-bench"),
                   "mitmdump (no addon)": (p.mitmdump("bare", emu, addon=False), "sk-bench"),
                   "gateway": (p.gateway(emu), "client-key-ignored")}
        out = {}
        for name, (url, key) in targets.items():
            with httpx.Client(timeout=60, trust_env=False) as c:
                _stream_once(c, url, key)  # warm-up: connections, imports
                firsts, gaps, counts = [], [], []
                for _ in range(runs):
                    first, arrivals = _stream_once(c, url, key)
                    firsts.append(first * 1000)
                    gaps += [(b - a) * 1000 for a, b in zip(arrivals, arrivals[1:])]
                    counts.append(len(arrivals))
            out[name] = {
                "first_chunk_ms_median": round(statistics.median(firsts), 2),
                "first_chunk_ms_max": round(max(firsts), 2),
                "chunks_per_stream": statistics.median(counts),
                "gap_ms_median": round(statistics.median(gaps), 2),
                "gap_ms_p95_abs_error": round(sorted(abs(g - gap_ms) for g in gaps)[int(len(gaps) * 0.95) - 1], 2),
            }
        base = out["direct"]["first_chunk_ms_median"]
        for v in out.values():
            v["first_chunk_vs_direct_ms"] = round(v["first_chunk_ms_median"] - base, 2)
        return {"scenario": f"stream: {runs} runs of ~40 chunks, {gap_ms} ms apart", "results": out}


def table(result: dict) -> str:
    rows = result["results"]
    cols = list(next(iter(rows.values())))
    lines = ["| target | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(str(v[c]) for c in cols) + " |" for name, v in rows.items()]
    return f"{result['scenario']}\n\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", choices=["stream"])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--gap-ms", type=int, default=50)
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    a = ap.parse_args(argv)
    result = bench_stream(a.runs, a.gap_ms)
    result["machine"] = machine()
    print(json.dumps(result, indent=2) if a.json else table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
