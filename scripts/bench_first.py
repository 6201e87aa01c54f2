"""The first Messages stream after a start against the second (scripts/bench.py first).

Each round starts a fresh gateway (and, with QWEN_BENCH_BASELINE=DIR, that checkout's), sends two Messages
streams one after the other and times each one's `message_start` and first text delta from the request's
start. The prompt (~8 kB) is too long to be counted on the spot: its count runs in the estimator's thread, and
in a fresh process that count first loads tiktoken's encoding (~0.3 s).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import httpx

from benchlib import Procs, revision, set_emulator_switches

PROMPT = "Please summarise the following notes on the build. " * 160  # ~8 kB


def _times(client: httpx.Client, url: str) -> tuple[float, float]:
    """ms to `message_start` and to the first text delta of one Messages stream."""
    body = {"model": "claude-sonnet-5-5", "max_tokens": 256, "stream": True,
            "messages": [{"role": "user", "content": PROMPT}]}
    headers = {"x-api-key": "client-key-ignored", "anthropic-version": "2023-06-01"}
    t0 = time.perf_counter()
    start = first = None
    with client.stream("POST", url + "/v1/messages", json=body, headers=headers) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if start is None and line == "event: message_start":
                start = (time.perf_counter() - t0) * 1000
            if line.startswith("data: ") and '"text_delta"' in line:
                first = (time.perf_counter() - t0) * 1000
                break
    if start is None or first is None:
        raise RuntimeError("no message_start or text delta")
    return start, first


def bench_first(rounds: int) -> dict:
    baseline = os.environ.get("QWEN_BENCH_BASELINE")
    targets: dict[str, Path | None] = {"gateway": None}
    if baseline:
        targets[f"gateway at {revision(Path(baseline))}"] = Path(baseline)
    got: dict[str, dict[str, list[float]]] = {n: {"start1": [], "start2": [], "text1": [], "text2": []} for n in targets}
    for i in range(rounds):
        for name, checkout in targets.items():  # alternated: the machine's drift hits both alike
            with Procs() as p:
                emu = p.emulator()
                set_emulator_switches(emu, reasoning=False)
                httpx.post(emu + "/v1/chat/completions", trust_env=False, timeout=60,  # the emulator's own first
                           headers={"authorization": "Bearer sk-bench"},
                           json={"model": "qwen3-coder-plus", "max_completion_tokens": 16, "stream": True,
                                 "messages": [{"role": "user", "content": PROMPT}]})
                url = p.gateway(emu, f"g{i}", checkout=checkout)
                with httpx.Client(timeout=60, trust_env=False) as c:
                    for n in (1, 2):
                        s, t = _times(c, url)
                        got[name][f"start{n}"].append(s)
                        got[name][f"text{n}"].append(t)
    out = {name: {f"{k}_ms_median": round(statistics.median(v), 1) for k, v in cols.items()}
           | {f"{k}_ms_max": round(max(v), 1) for k, v in cols.items() if k.endswith("1")}
           for name, cols in got.items()}
    return {"scenario": f"first: the first and second Messages stream after a start, {rounds} fresh gateways",
            "results": out}


if __name__ == "__main__":
    print(json.dumps(bench_first(3), indent=2))
