"""Benchmarks, all in one run against the emulator: direct, bare mitmdump, and the gateway.

    .venv/bin/python scripts/bench.py stream      # time to first chunk and gap fidelity of a 2 s stream
    .venv/bin/python scripts/bench.py latency     # non-stream p50/p99 at concurrency 1
    .venv/bin/python scripts/bench.py throughput  # requests/s at concurrency 16
    .venv/bin/python scripts/bench.py bigprompt   # a 1 MB prompt; token counting on vs off
    .venv/bin/python scripts/bench.py memory      # gateway RSS after 5,000 and 20,000 requests
    .venv/bin/python scripts/bench.py webmemory   # mitmweb RSS over 5,000 requests, flow cap on vs off
    .venv/bin/python scripts/bench.py far         # a far upstream (50 ms each way): new connection per request vs
                                                  # keep-alive; LiteLLM too when $QWEN_BENCH_LITELLM names its binary
    .venv/bin/python scripts/bench.py retry       # first chunk of a stream that needed a 401 refresh vs one that did not
    .venv/bin/python scripts/bench.py all --json

Results are recorded in docs/performance.md. Nothing here asserts: it measures.
"""

from __future__ import annotations

import argparse
import asyncio
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


CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "ping"}]}


PROCESS = {"mitmdump (no addon)": "bare", "mitmdump (no addon), plain body": "bare",
           "gateway": "gateway"}  # target -> process whose CPU is counted


Req = tuple[str, dict[str, str], bytes]  # path, headers, body


def _chat(key: str, body: dict) -> Req:
    return "/v1/chat/completions", {"authorization": f"Bearer {key}", "content-type": "application/json"}, \
        json.dumps(body).encode()


def _as_sent_upstream(emu: str, gateway: str) -> Req:
    """The request the gateway sends to Qwen for CHAT (qwen-code's shape: its headers, metadata and cache
    markers), as the emulator logged it: sent by direct and bare targets, the emulator does the same
    work for every target and the difference is the proxy's alone."""
    httpx.delete(emu + "/_emulator/requests", trust_env=False).raise_for_status()
    httpx.post(gateway + "/v1/chat/completions", json=CHAT, trust_env=False).raise_for_status()
    logged = [r for r in httpx.get(emu + "/_emulator/requests", trust_env=False).json()
              if r["path"].endswith("/chat/completions")][-1]
    skip = {"host", "content-length", "connection", "accept-encoding"}
    return logged["path"], {k: v for k, v in logged["headers"].items() if k not in skip}, \
        json.dumps(logged["body"]).encode()


def _proxy_targets(p: Procs, emu: str) -> dict[str, tuple[str, Req]]:
    """direct and bare mitmproxy send what the gateway sends upstream; a second bare row sends the
    client's plain chat body (the emulator then does less work per request than for the gateway)."""
    bare = p.mitmdump("bare", emu, addon=False)
    gateway = p.gateway(emu)
    shaped = _as_sent_upstream(emu, gateway)
    return {"direct": (emu, shaped), "mitmdump (no addon)": (bare, shaped),
            "mitmdump (no addon), plain body": (bare, _chat("sk-bench", _body_for("bare", CHAT))),
            "gateway": (gateway, _chat("client-key-ignored", CHAT))}


def _targets(p: Procs, emu: str, *, bare: bool = True) -> dict[str, tuple[str, str]]:
    out = {"direct": (emu, "sk-bench")}
    if bare:
        out["mitmdump (no addon)"] = (p.mitmdump("bare", emu, addon=False), "sk-bench")
    out["gateway"] = (p.gateway(emu), "client-key-ignored")
    return out


def _cpu_ms_per_request(p: Procs, name: str, before: float, requests: int) -> float | str:
    proc = PROCESS.get(name)
    return round((p.cpu_s(proc) - before) * 1000 / requests, 3) if proc else "-"


def _cpu_before(p: Procs, name: str) -> float:
    return p.cpu_s(PROCESS[name]) if name in PROCESS else 0.0


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(len(xs) * q))], 3)


def _body_for(name: str, body: dict) -> dict:
    # direct and bare mitmproxy talk to the emulator, which wants a Qwen model name
    return body if name == "gateway" or name.startswith("gateway") else {**body, "model": "qwen3-coder-plus"}


def _timed(url: str, req: Req, n: int, warmup: int) -> list[float]:
    """Milliseconds for each of n sequential requests on one keep-alive connection, after a warm-up."""
    path, headers, content = req
    with httpx.Client(timeout=60, trust_env=False, headers=headers) as c:
        for _ in range(warmup):
            c.post(url + path, content=content).raise_for_status()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            c.post(url + path, content=content).raise_for_status()
            times.append((time.perf_counter() - t0) * 1000)
    return times


def bench_latency(n: int, rounds: int = 4) -> dict:
    with Procs() as p:
        emu = p.emulator()
        out = {}
        targets = _proxy_targets(p, emu)
        for round_ in range(rounds):  # alternating rounds: the machine's drift hits every target alike
            for name, (url, req) in targets.items():
                before, emu_before = _cpu_before(p, name), p.cpu_s("emulator")
                times = _timed(url, req, n // rounds, warmup=30 if round_ == 0 else 5)
                acc = out.setdefault(name, {"times": [], "cpu": [], "emu": []})
                acc["times"] += times
                sent = n // rounds + (30 if round_ == 0 else 5)
                acc["cpu"].append(_cpu_ms_per_request(p, name, before, sent))
                acc["emu"].append((p.cpu_s("emulator") - emu_before) * 1000 / sent)
        for acc in out.values():
            times, cpu, emu_cpu = acc.pop("times"), acc.pop("cpu"), acc.pop("emu")
            acc.update(p50_ms=_pct(times, 0.5), p99_ms=_pct(times, 0.99), requests=len(times),
                       cpu_ms_per_request=cpu[0] if cpu[0] == "-" else round(statistics.median(cpu), 3),
                       emulator_cpu_ms_per_request=round(statistics.median(emu_cpu), 3))
        for v in out.values():
            v["p50_vs_bare_ms"] = round(v["p50_ms"] - out["mitmdump (no addon)"]["p50_ms"], 3)
        return {"scenario": f"latency: {n} sequential non-stream requests, keep-alive", "results": out}


async def _hammer(url: str, req: Req, total: int, concurrency: int) -> float:
    path, headers, content = req
    done = 0
    async with httpx.AsyncClient(timeout=60, trust_env=False, headers=headers,
                                 limits=httpx.Limits(max_connections=concurrency)) as c:
        async def worker():
            nonlocal done
            while done < total:
                done += 1
                (await c.post(url + path, content=content)).raise_for_status()
        await asyncio.gather(*(worker() for _ in range(concurrency)))  # warm-up
        done = 0
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total / (time.perf_counter() - t0)


def bench_throughput(total: int, concurrency: int, rounds: int = 4) -> dict:
    with Procs() as p:
        emu = p.emulator()
        out: dict[str, dict] = {}
        targets = _proxy_targets(p, emu)
        for _ in range(rounds):
            for name, (url, req) in targets.items():
                before, emu_before = _cpu_before(p, name), p.cpu_s("emulator")
                rps = asyncio.run(_hammer(url, req, total // rounds, concurrency))
                acc = out.setdefault(name, {"rps": [], "cpu": [], "emu": []})
                acc["rps"].append(rps)
                acc["cpu"].append(_cpu_ms_per_request(p, name, before, 2 * (total // rounds)))
                acc["emu"].append((p.cpu_s("emulator") - emu_before) * 1000 / (2 * (total // rounds)))
        for acc in out.values():
            rps, cpu, emu_cpu = acc.pop("rps"), acc.pop("cpu"), acc.pop("emu")
            acc.update(requests_per_s=round(statistics.median(rps), 1),
                       cpu_ms_per_request=cpu[0] if cpu[0] == "-" else round(statistics.median(cpu), 3),
                       emulator_cpu_ms_per_request=round(statistics.median(emu_cpu), 3))
        base = out["mitmdump (no addon)"]["requests_per_s"]
        for v in out.values():
            v["vs_bare"] = f"{v['requests_per_s'] / base:.0%}"
        return {"scenario": f"throughput: {total} requests at concurrency {concurrency}", "results": out}


def bench_bigprompt(n: int) -> dict:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": ("lorem ipsum dolor sit amet " * 40000)[:1 << 20]}]}
    with Procs() as p:
        emu = p.emulator()
        targets = _targets(p, emu)
        targets["gateway, token counting off"] = (p.gateway(emu, "gateway-nocount", args=(
            "--set", "qwen_token_count=false")), "x")
        out = {}
        for name, (url, key) in targets.items():
            times = _timed(url, _chat(key, _body_for(name, body)), n, warmup=1)
            out[name] = {"p50_ms": _pct(times, 0.5), "p95_ms": _pct(times, 0.95)}
        return {"scenario": f"1 MiB prompt: {n} sequential requests (gateway counts tokens in a thread)",
                "results": out}


def bench_memory(steps: tuple[int, ...], concurrency: int = 8) -> dict:
    with Procs() as p:
        emu = p.emulator()
        url = p.gateway(emu)
        out = {}
        sent = 0
        for step in steps:
            asyncio.run(_hammer(url, _chat("x", CHAT), step - sent, concurrency))
            sent = step
            out[f"after {step}"] = {"rss_mb": round(p.rss_mb("gateway"), 1)}
        return {"scenario": "gateway (mitmdump) RSS while serving non-stream requests", "results": out}


def bench_webmemory(total: int, every: int) -> dict:
    with Procs() as p:
        emu = p.emulator()
        capped = p.gateway(emu, "mitmweb-cap500", tool="mitmweb")
        uncapped = p.gateway(emu, "mitmweb-nocap", tool="mitmweb", args=("--set", "qwen_web_flow_limit=0"))
        out: dict[str, dict] = {}
        for sent in range(every, total + 1, every):
            for url in (capped, uncapped):
                asyncio.run(_hammer(url, _chat("x", CHAT), every, 8))
            out[f"after {sent}"] = {"cap 500 (default) MB": round(p.rss_mb("mitmweb-cap500"), 1),
                                    "no cap MB": round(p.rss_mb("mitmweb-nocap"), 1)}
        return {"scenario": f"mitmweb RSS over {total} requests", "results": out}


def _ask(url: str, key: str, body: dict, n: int, *, new_connection: bool) -> list[float]:
    """Milliseconds per request: each on a new connection (as CLI tools do), or all on one kept alive."""
    import ssl
    tls = ssl.create_default_context()  # built once: a client's own set-up is not what is measured
    times = []
    client = None if new_connection else httpx.Client(timeout=60, trust_env=False, verify=tls)
    try:
        for _ in range(n + 2):
            t0 = time.perf_counter()
            if new_connection:
                with httpx.Client(timeout=60, trust_env=False, verify=tls) as c:
                    c.post(url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
                           ).raise_for_status()
            else:
                client.post(url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
                            ).raise_for_status()
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        if client is not None:
            client.close()
    return times[2:]  # the first two warm the path up


def bench_far(n: int, delay_ms: int) -> dict:
    import os
    with Procs() as p:
        emu = p.emulator()
        far = p.delay_proxy(emu, delay_ms)
        targets = {"direct": (far, "sk-bench"),
                   "mitmdump (no addon)": (p.mitmdump("bare", far, addon=False), "sk-bench"),
                   "gateway": (p.gateway(emu, upstream=far), "x")}
        litellm = os.environ.get("QWEN_BENCH_LITELLM")
        if litellm:
            targets["LiteLLM proxy"] = (p.litellm(litellm, far), "sk-bench-litellm-master")
        out = {}
        for name, (url, key) in targets.items():
            body = _body_for(name, CHAT)
            if name == "LiteLLM proxy":
                body = {**CHAT, "model": "qwen"}
            fresh = _ask(url, key, body, n, new_connection=True)
            kept = _ask(url, key, body, n, new_connection=False)
            out[name] = {"new_connection_p50_ms": _pct(fresh, 0.5), "keepalive_p50_ms": _pct(kept, 0.5),
                         "difference_ms": round(_pct(fresh, 0.5) - _pct(kept, 0.5), 1)}
        return {"scenario": f"far upstream: {delay_ms} ms each way, {n} sequential non-stream requests per column",
                "results": out}


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
        out = {"stream, first attempt served": {"first_chunk_p50_ms": _pct(plain, 0.5)},
               "stream after 401 + refresh": {"first_chunk_p50_ms": _pct(retried, 0.5)}}
        out["stream after 401 + refresh"]["extra_ms"] = round(_pct(retried, 0.5) - _pct(plain, 0.5), 2)
        out["stream, first attempt served"]["extra_ms"] = 0.0
        return {"scenario": f"retried stream: {n} pairs, emulator on loopback (a 401 answer and a refresh cost "
                            "two loopback round trips)", "results": out}


def table(result: dict) -> str:
    rows = result["results"]
    cols = list(next(iter(rows.values())))
    lines = ["| target | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(str(v[c]) for c in cols) + " |" for name, v in rows.items()]
    return f"{result['scenario']}\n\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    scenarios = {
        "stream": lambda a: bench_stream(a.runs, a.gap_ms),
        "latency": lambda a: bench_latency(a.requests * 2, rounds=8),
        "throughput": lambda a: bench_throughput(a.requests * 10, 16, rounds=6),
        "bigprompt": lambda a: bench_bigprompt(20),
        "memory": lambda a: bench_memory((5000, 20000)),
        "webmemory": lambda a: bench_webmemory(5000, 1000),
        "far": lambda a: bench_far(min(a.requests, 40), 50),
        "retry": lambda a: bench_retry(min(a.requests, 30)),
    }
    ap.add_argument("scenario", choices=[*scenarios, "all"])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--gap-ms", type=int, default=50)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--json", action="store_true", help="print JSON instead of tables")
    a = ap.parse_args(argv)
    names = list(scenarios) if a.scenario == "all" else [a.scenario]
    results = []
    for name in names:
        r = scenarios[name](a)
        r["machine"] = machine()
        results.append(r)
        if not a.json:
            print(table(r) + "\n", flush=True)
    if a.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
