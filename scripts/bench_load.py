"""Whole (non-stream) answers: latency, throughput, a 1 MiB prompt, memory (scripts/bench.py)."""

from __future__ import annotations

import asyncio
import statistics

from bench_http import (CHAT, Req, as_sent_upstream, body_for, chat, cpu_before, cpu_ms_per_request, hammer, pct,
                        timed)
from benchlib import Procs


def _proxy_targets(p: Procs, emu: str) -> dict[str, tuple[str, Req]]:
    """direct and bare mitmproxy send what the gateway sends upstream; a second bare row sends the
    client's plain chat body (the emulator then does less work per request than for the gateway)."""
    bare = p.mitmdump("bare", emu, addon=False)
    gateway = p.gateway(emu)
    client = chat("client-key-ignored", CHAT)
    shaped = as_sent_upstream(emu, gateway, client)
    return {"direct": (emu, shaped), "mitmdump (no addon)": (bare, shaped),
            "mitmdump (no addon), plain body": (bare, chat("sk-bench", body_for("bare", CHAT))),
            "gateway": (gateway, client)}


def _targets(p: Procs, emu: str) -> dict[str, tuple[str, str]]:
    return {"direct": (emu, "sk-bench"), "mitmdump (no addon)": (p.mitmdump("bare", emu, addon=False), "sk-bench"),
            "gateway": (p.gateway(emu), "client-key-ignored")}


def bench_latency(n: int, rounds: int = 4) -> dict:
    with Procs() as p:
        emu = p.emulator()
        out = {}
        targets = _proxy_targets(p, emu)
        for round_ in range(rounds):  # alternating rounds: the machine's drift hits every target alike
            for name, (url, req) in targets.items():
                before, emu_before = cpu_before(p, name), p.cpu_s("emulator")
                times = timed(url, req, n // rounds, warmup=30 if round_ == 0 else 5)
                acc = out.setdefault(name, {"times": [], "cpu": [], "emu": []})
                acc["times"] += times
                sent = n // rounds + (30 if round_ == 0 else 5)
                acc["cpu"].append(cpu_ms_per_request(p, name, before, sent))
                acc["emu"].append((p.cpu_s("emulator") - emu_before) * 1000 / sent)
        for acc in out.values():
            times, cpu, emu_cpu = acc.pop("times"), acc.pop("cpu"), acc.pop("emu")
            acc.update(p50_ms=pct(times, 0.5), p99_ms=pct(times, 0.99), requests=len(times),
                       cpu_ms_per_request=cpu[0] if cpu[0] == "-" else round(statistics.median(cpu), 3),
                       emulator_cpu_ms_per_request=round(statistics.median(emu_cpu), 3))
        for v in out.values():
            v["p50_vs_bare_ms"] = round(v["p50_ms"] - out["mitmdump (no addon)"]["p50_ms"], 3)
        return {"scenario": f"latency: {n} sequential non-stream requests, keep-alive", "results": out}


def bench_throughput(total: int, concurrency: int, rounds: int = 4) -> dict:
    with Procs() as p:
        emu = p.emulator()
        out: dict[str, dict] = {}
        targets = _proxy_targets(p, emu)
        for _ in range(rounds):
            for name, (url, req) in targets.items():
                before, emu_before = cpu_before(p, name), p.cpu_s("emulator")
                rps = asyncio.run(hammer(url, req, total // rounds, concurrency))
                acc = out.setdefault(name, {"rps": [], "cpu": [], "emu": []})
                acc["rps"].append(rps)
                acc["cpu"].append(cpu_ms_per_request(p, name, before, 2 * (total // rounds)))
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
            times = timed(url, chat(key, body_for(name, body)), n, warmup=1)
            out[name] = {"p50_ms": pct(times, 0.5), "p95_ms": pct(times, 0.95)}
        return {"scenario": f"1 MiB prompt: {n} sequential requests (gateway counts tokens in a thread)",
                "results": out}


def bench_memory(steps: tuple[int, ...], concurrency: int = 8) -> dict:
    with Procs() as p:
        emu = p.emulator()
        url = p.gateway(emu)
        out = {}
        sent = 0
        for step in steps:
            asyncio.run(hammer(url, chat("x", CHAT), step - sent, concurrency))
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
                asyncio.run(hammer(url, chat("x", CHAT), every, 8))
            out[f"after {sent}"] = {"cap 500 (default) MB": round(p.rss_mb("mitmweb-cap500"), 1),
                                    "no cap MB": round(p.rss_mb("mitmweb-nocap"), 1)}
        return {"scenario": f"mitmweb RSS over {total} requests", "results": out}
