"""Many streams at once (scripts/bench.py concurrency): N streams opened together, each sending events at a
real token rate, through each target in turn in one run — direct, bare mitmdump streaming bodies
(`stream_large_bodies=1`: without it mitmproxy buffers an event stream until it ends) and the gateway.

The client is a small raw-socket asyncio client (one connection per stream, HTTP/1.1, `connection: close`),
so its own cost per event is a `recv` and a byte count, not an HTTP library's. For each target it reports:
events/s held over the run, the gaps between a stream's events (p50 / p99, and p99 of their distance from
the gap the emulator sent), first-event latency (p50, mean, p99 from sending the request), the proxy's RSS growth
per held stream (its peak RSS while the streams are open minus its RSS before, over N), and the proxy's CPU
(user + system) per 1,000 events. Nothing asserts: it measures.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench_http import as_sent_upstream, chat
from benchlib import Procs, percentile, revision, set_emulator_switches

RSS_SAMPLE_S = 0.05


async def one_stream(host: str, port: int, head: bytes, body: bytes, t_start: float) -> tuple[float, list[float]]:
    """(seconds from `t_start` to sending, arrival times of each data event but [DONE])."""
    reader, writer = await asyncio.open_connection(host, port)
    sent = time.perf_counter()
    writer.write(head + body)
    arrivals: list[float] = []
    seen = b""
    status: bytes | None = None
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            now = time.perf_counter()
            if status is None:
                status = data.split(b" ", 2)[1]
                if status != b"200":
                    raise RuntimeError(f"HTTP {status.decode()}: {data[:300]!r}")
            # an event may straddle two reads: count "data: " at the ends of the carried text too
            text = seen + data
            n = text.count(b"data: ") - seen.count(b"data: ")
            done = text.count(b"data: [DONE]") - seen.count(b"data: [DONE]")
            arrivals += [now - sent] * (n - done)
            seen = text[-16:]
    finally:
        writer.close()
    return sent - t_start, arrivals


async def run_streams(url: str, req: tuple[str, dict[str, str], bytes], n: int) -> list[list[float]]:
    u = urlsplit(url)
    path, headers, content = req
    lines = [f"POST {path} HTTP/1.1", f"host: {u.netloc}", f"content-length: {len(content)}", "connection: close",
             "accept: text/event-stream", *(f"{k}: {v}" for k, v in headers.items())]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    t0 = time.perf_counter()
    got = await asyncio.gather(*(one_stream(u.hostname or "127.0.0.1", u.port or 80, head, content, t0)
                                 for _ in range(n)))
    return [arrivals for _, arrivals in got]


class RssSampler(threading.Thread):
    """The peak RSS (MiB) of a process, sampled every RSS_SAMPLE_S until stopped."""

    def __init__(self, procs: Procs, name: str) -> None:
        super().__init__(daemon=True)
        self.procs, self.name = procs, name
        self.peak = procs.rss_mb(name)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(RSS_SAMPLE_S):
            self.peak = max(self.peak, self.procs.rss_mb(self.name))


def measure(p: Procs, proc: str | None, url: str, req, n: int, gap_ms: int) -> dict:
    asyncio.run(run_streams(url, req, min(n, 20)))  # warm-up: imports, pools, caches
    before_rss = p.rss_mb(proc) if proc else 0.0
    cpu0 = p.cpu_s(proc) if proc else 0.0
    emu0 = p.cpu_s("emulator")
    sampler = RssSampler(p, proc) if proc else None
    if sampler:
        sampler.start()
    t0 = time.perf_counter()
    streams = asyncio.run(run_streams(url, req, n))
    wall = time.perf_counter() - t0
    if sampler:
        sampler.stopping.set()
        sampler.join()
    events = sum(len(s) for s in streams)
    firsts = [s[0] * 1000 for s in streams if s]
    gaps = [(b - a) * 1000 for s in streams for a, b in zip(s, s[1:])]
    errors = [abs(g - gap_ms) for g in gaps]
    out = {
        "streams": n, "events": events, "events_per_stream": statistics.median(len(s) for s in streams),
        "events_per_s": round(events / wall, 1),
        "gap_p50_ms": round(statistics.median(gaps), 1), "gap_p99_ms": round(percentile(gaps, 0.99), 1),
        "gap_p99_error_ms": round(percentile(errors, 0.99), 1),
        "first_event_p50_ms": round(statistics.median(firsts), 2), "first_event_mean_ms": round(statistics.mean(firsts), 2),
        "first_event_p99_ms": round(percentile(firsts, 0.99), 2),
        "rss_kib_per_stream": round((sampler.peak - before_rss) * 1024 / n, 1) if sampler else "-",
        "cpu_ms_per_1000_events": round((p.cpu_s(proc) - cpu0) * 1e6 / events, 1) if proc and events else "-",
        "emulator_cpu_ms_per_1000_events": round((p.cpu_s("emulator") - emu0) * 1e6 / events, 1) if events else "-",
    }
    return out


def bench_concurrency(n: int, gap_ms: int, events: int, rounds: int = 1) -> dict:
    """n streams of about `events` events `gap_ms` apart, opened together, through each target."""
    with Procs() as p:
        emu = p.emulator()
        words = " ".join(f"w{i}" for i in range(max(1, events - 2)))  # + the role chunk and the finish chunk
        body = {"model": "qwen3-coder-plus", "stream": True, "messages": [{"role": "user", "content": words}]}
        bare = p.mitmdump("bare", emu, addon=False, args=("--set", "stream_large_bodies=1"))
        gateway = p.gateway(emu)
        client = chat("client-key-ignored", body)
        shaped = as_sent_upstream(emu, gateway, client)  # direct and bare send what the gateway sends Qwen
        set_emulator_switches(emu, gap_ms=gap_ms, reasoning=False)
        targets = {"direct": (None, emu, shaped), "mitmdump (no addon), streaming": ("bare", bare, shaped),
                   "gateway": ("gateway", gateway, client)}
        baseline = os.environ.get("QWEN_BENCH_BASELINE")  # another checkout (with its .venv): before a change
        if baseline:
            name = f"gateway at {revision(Path(baseline))}"
            targets[name] = ("baseline", p.gateway(emu, "baseline", checkout=Path(baseline)), client)
        runs: dict[str, list[dict]] = {name: [] for name in targets}
        for _ in range(rounds):  # alternating rounds: the machine's drift hits every target alike
            for name, (proc, url, req) in targets.items():
                runs[name].append(measure(p, proc, url, req, n, gap_ms))
        out = {name: _median_of(rs) for name, rs in runs.items()}
        bare_row, direct_row = out["mitmdump (no addon), streaming"], out["direct"]
        for row in out.values():
            row["gap_p99_vs_bare_ms"] = round(row["gap_p99_ms"] - bare_row["gap_p99_ms"], 1)
            row["first_event_p50_vs_direct_ms"] = round(row["first_event_p50_ms"] - direct_row["first_event_p50_ms"], 2)
        return {"scenario": f"concurrency: {n} streams of ~{events} events {gap_ms} ms apart, opened together "
                            f"({rounds} round{'s' if rounds > 1 else ''}, medians)", "results": out}


def _median_of(rows: list[dict]) -> dict:
    """Medians over the rounds; RSS growth from the first round (memory a process has grown to stays, so
    later rounds of the same process grow less)."""
    out = {k: (round(statistics.median(r[k] for r in rows), 2) if not isinstance(rows[0][k], str) else rows[0][k])
           for k in rows[0]}
    out["rss_kib_per_stream"] = rows[0]["rss_kib_per_stream"]
    return out

