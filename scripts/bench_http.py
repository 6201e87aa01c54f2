"""The client side shared by the benchmarks (scripts/bench.py): request shapes, timed requests, load, SSE."""

from __future__ import annotations

import asyncio
import json
import time
import httpx

from benchlib import Procs

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "ping"}]}

PROCESS = {"mitmdump (no addon)": "bare", "mitmdump (no addon), plain body": "bare",
           "gateway": "gateway"}  # target -> process whose CPU is counted

Req = tuple[str, dict[str, str], bytes]  # path, headers, body


def long_conversation(rounds: int = 50) -> dict:
    """What a coding agent sends late in a session: a system prompt, a tool, `rounds` rounds of a user request,
    a tool call, its result and an answer, and the new question (202 messages, 60 kB by default)."""
    messages: list[dict] = [{"role": "system", "content": "You are a careful coding assistant. " * 50}]
    for i in range(rounds):
        messages += [
            {"role": "user", "content": f"please fix the bug in file {i} " * 10},
            {"role": "assistant", "content": None, "tool_calls": [{"id": f"call_{i}", "type": "function", "function": {
                "name": "read", "arguments": json.dumps({"path": f"src/f{i}.py"})}}]},
            {"role": "tool", "tool_call_id": f"call_{i}", "content": "file contents " * 40},
            {"role": "assistant", "content": f"Fixed the bug in file {i}."}]
    messages.append({"role": "user", "content": "ping"})
    tool = {"type": "function", "function": {"name": "read", "description": "Read a file.", "parameters": {
        "type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}}
    return {"model": "gpt-4o", "messages": messages, "tools": [tool]}


def chat(key: str, body: dict) -> Req:
    return "/v1/chat/completions", {"authorization": f"Bearer {key}", "content-type": "application/json"}, \
        json.dumps(body).encode()


def body_for(name: str, body: dict) -> dict:
    # direct and bare mitmproxy talk to the emulator, which wants a Qwen model name
    return body if name.startswith("gateway") else {**body, "model": "qwen3-coder-plus"}


def as_sent_upstream(emu: str, gateway: str, req: Req) -> Req:
    """The request the gateway sends to Qwen for `req` (qwen-code's shape: its headers, metadata and cache
    markers), as the emulator logged it: sent by direct and bare targets, the emulator does the same
    work for every target and the difference is the proxy's alone."""
    path, headers, content = req
    httpx.delete(emu + "/_emulator/requests", trust_env=False).raise_for_status()
    httpx.post(gateway + path, content=content, headers=headers, trust_env=False).raise_for_status()
    logged = [r for r in httpx.get(emu + "/_emulator/requests", trust_env=False).json()
              if r["path"].endswith("/chat/completions")][-1]
    skip = {"host", "content-length", "connection", "accept-encoding"}
    return logged["path"], {k: v for k, v in logged["headers"].items() if k not in skip}, \
        json.dumps(logged["body"]).encode()


def cpu_before(p: Procs, name: str) -> float:
    return p.cpu_s(PROCESS[name]) if name in PROCESS else 0.0


def cpu_ms_per_request(p: Procs, name: str, before: float, requests: int) -> float | str:
    proc = PROCESS.get(name)
    return round((p.cpu_s(proc) - before) * 1000 / requests, 3) if proc else "-"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(len(xs) * q))], 3)


def timed(url: str, req: Req, n: int, warmup: int) -> list[float]:
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


async def hammer(url: str, req: Req, total: int, concurrency: int) -> float:
    """Requests per second for `total` requests from `concurrency` clients, after as many to warm up."""
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


def sse_events(client: httpx.Client, url: str, req: Req) -> list[tuple[float, bytes]]:
    """(seconds from sending `req` to its arrival, the event's bytes) for each SSE event of the answer."""
    path, headers, content = req
    t0 = time.perf_counter()
    events: list[tuple[float, bytes]] = []
    buf = b""
    with client.stream("POST", url + path, content=content, headers=headers) as r:
        r.raise_for_status()
        for raw in r.iter_raw():
            now = time.perf_counter() - t0
            buf += raw
            *complete, buf = buf.split(b"\n\n")
            events += [(now, e) for e in complete if e.strip()]
    return events
