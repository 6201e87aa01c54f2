"""Streams: first chunk and gap fidelity; a stream retried after 401 (scripts/bench.py)."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import httpx

from bench_http import CHAT, Req, chat, pct, sse_events
from benchlib import Procs, revision, set_emulator_switches

WORDS = " ".join(f"w{i}" for i in range(40))  # the emulator echoes it one word per chunk


def data_arrivals(client: httpx.Client, url: str, req: Req) -> list[float]:
    """Arrival times of every data event of a stream but [DONE]."""
    return [t for t, e in sse_events(client, url, req) if e.strip().startswith(b"data:") and b"[DONE]" not in e]


def gap_stats(arrivals: list[list[float]], gap_ms: int) -> dict:
    """Median gap between consecutive counted events, and the 95th percentile of its distance from gap_ms."""
    gaps = [(b - a) * 1000 for one in arrivals for a, b in zip(one, one[1:])]
    return {"gap_ms_median": round(statistics.median(gaps), 2),
            "gap_ms_p95_abs_error": round(sorted(abs(g - gap_ms) for g in gaps)[int(len(gaps) * 0.95) - 1], 2)}


def bench_stream(runs: int, gap_ms: int) -> dict:
    with Procs() as p:
        emu = p.emulator()
        set_emulator_switches(emu, gap_ms=gap_ms, reasoning=False)
        body = {"model": "qwen3-coder-plus", "stream": True, "messages": [{"role": "user", "content": WORDS}]}
        targets = {"direct": (emu, "sk-bench"),
                   "mitmdump (no addon)": (p.mitmdump("bare", emu, addon=False), "sk-bench"),
                   # streaming bodies (without it mitmproxy buffers an event stream): mitmproxy's own floor
                   "mitmdump (no addon), streaming": (p.mitmdump("bare-stream", emu, addon=False,
                                                                 args=("--set", "stream_large_bodies=1")), "sk-bench"),
                   "gateway": (p.gateway(emu), "client-key-ignored")}
        baseline = os.environ.get("QWEN_BENCH_BASELINE")  # another checkout (with its .venv): before a change
        if baseline:
            targets[f"gateway at {revision(Path(baseline))}"] = (p.gateway(emu, "baseline", checkout=Path(baseline)),
                                                                 "client-key-ignored")
        clients = {name: httpx.Client(timeout=60, trust_env=False) for name in targets}
        try:
            for name, (url, key) in targets.items():
                data_arrivals(clients[name], url, chat(key, body))  # warm-up: connections, imports
            # one stream per target in turn, `runs` times: the machine's drift hits every target alike
            streams: dict[str, list[list[float]]] = {name: [] for name in targets}
            for _ in range(runs):
                for name, (url, key) in targets.items():
                    if name != "mitmdump (no addon)" or len(streams[name]) < 3:  # buffered: 2 s each, 3 are plenty
                        streams[name].append(data_arrivals(clients[name], url, chat(key, body)))
        finally:
            for c in clients.values():
                c.close()
        out = {}
        for name, got in streams.items():
            firsts = [s[0] * 1000 for s in got]
            out[name] = {
                "first_chunk_ms_median": round(statistics.median(firsts), 2),
                "first_chunk_ms_max": round(max(firsts), 2),
                "chunks_per_stream": statistics.median([len(s) for s in got]),
                **gap_stats(got, gap_ms),
            }
        base = out["direct"]["first_chunk_ms_median"]
        for v in out.values():
            v["first_chunk_vs_direct_ms"] = round(v["first_chunk_ms_median"] - base, 2)
        return {"scenario": f"stream: {runs} runs of ~40 chunks, {gap_ms} ms apart", "results": out}


def _first_chunk_ms(client: httpx.Client, url: str, body: dict) -> float:
    t0 = time.perf_counter()
    with client.stream("POST", url + "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("data: {") and '"content"' in line:
                return (time.perf_counter() - t0) * 1000
    raise RuntimeError("no content chunk")


def bench_retry(n: int) -> dict:
    """A stream whose first attempt gets 401 (refresh, then the stream) against one that does not: the
    difference is the failed attempt and the refresh; after that the retried stream's first chunk arrives
    as fast as any first attempt's."""
    with Procs() as p:
        emu = p.emulator()
        url = p.gateway(emu, refreshable=True)
        body = {**CHAT, "stream": True}
        plain, retried = [], []
        with httpx.Client(timeout=60, trust_env=False) as client:
            for i in range(n + 1):
                t = _first_chunk_ms(client, url, body)
                httpx.post(emu + "/_emulator/fault", json={"kind": "auth401"}, trust_env=False).raise_for_status()
                r = _first_chunk_ms(client, url, body)
                if i:  # the first pair warms up
                    plain.append(t)
                    retried.append(r)
        out = {"stream, first attempt served": {"first_chunk_p50_ms": pct(plain, 0.5)},
               "stream after 401 + refresh": {"first_chunk_p50_ms": pct(retried, 0.5)}}
        out["stream after 401 + refresh"]["extra_ms"] = round(pct(retried, 0.5) - pct(plain, 0.5), 2)
        out["stream, first attempt served"]["extra_ms"] = 0.0
        return {"scenario": f"retried stream: {n} pairs, emulator on loopback (a 401 answer and a refresh cost "
                            "two loopback round trips)", "results": out}
