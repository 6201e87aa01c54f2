"""The Anthropic Messages path against the chat path, in one gateway process (scripts/bench.py messages).

The same prompt and max_tokens go to `/v1/chat/completions` and to `/v1/messages`; the chat request also
asks for no thinking (`enable_thinking: false`), which the Messages path asks Qwen for when the client did
not ask to think. The gateway then sends Qwen the same upstream request for both (the `upstream_body_bytes`
column shows it), the emulator does the same work and the difference is the gateway's. direct sends that
upstream request to the emulator itself. Streams send the pieces of text `gap_ms` apart (reasoning off:
the first `content_block_delta` is the first piece of text).
"""

from __future__ import annotations

import json
import statistics

import httpx

from bench_http import Req, as_sent_upstream, pct, sse_events, timed
from bench_stream import WORDS, gap_stats
from benchlib import Procs, set_emulator_switches

CHAT_ROW, MESSAGES_ROW = "gateway, /v1/chat/completions", "gateway, /v1/messages"


def _requests(stream: bool) -> dict[str, Req]:
    """The chat request and the Messages request for the same prompt."""
    turn = {"max_tokens": 1024, "messages": [{"role": "user", "content": WORDS}], "stream": stream}
    return {CHAT_ROW: ("/v1/chat/completions", {"authorization": "Bearer client-key-ignored",
                                                "content-type": "application/json"},
                       json.dumps({"model": "gpt-4o", **turn, "enable_thinking": False}).encode()),
            MESSAGES_ROW: ("/v1/messages", {"x-api-key": "client-key-ignored", "anthropic-version": "2023-06-01",
                                            "content-type": "application/json"},
                           json.dumps({"model": "claude-sonnet-5-5", **turn}).encode())}


def _targets(emu: str, gateway: str, stream: bool) -> tuple[dict[str, tuple[str, Req]], dict[str, int]]:
    """direct (the gateway's upstream request) and the two gateway paths; the size of each path's upstream body."""
    reqs = _requests(stream)
    sizes = {}
    for name, (path, headers, content) in reqs.items():
        httpx.delete(emu + "/_emulator/requests", trust_env=False).raise_for_status()
        httpx.post(gateway + path, content=content, headers=headers, trust_env=False, timeout=60).raise_for_status()
        sizes[name] = httpx.get(emu + "/_emulator/requests", trust_env=False).json()[-1]["raw_body_len"]
    direct = as_sent_upstream(emu, gateway, reqs[CHAT_ROW])  # the chat path's, re-encoded with spaces
    return {"direct": (emu, direct), **{name: (gateway, req) for name, req in reqs.items()}}, sizes


def _whole(p: Procs, emu: str, gateway: str, n: int, rounds: int) -> dict:
    targets, sizes = _targets(emu, gateway, stream=False)
    acc: dict[str, dict[str, list]] = {name: {"times": [], "cpu": [], "emu": []} for name in targets}
    for round_ in range(rounds):  # alternating rounds: the machine's drift hits every target alike
        for name, (url, req) in targets.items():
            warmup = 30 if round_ == 0 else 5
            before, emu_before = p.cpu_s("gateway"), p.cpu_s("emulator")
            acc[name]["times"] += timed(url, req, n // rounds, warmup=warmup)
            sent = n // rounds + warmup
            acc[name]["cpu"].append((p.cpu_s("gateway") - before) * 1000 / sent)
            acc[name]["emu"].append((p.cpu_s("emulator") - emu_before) * 1000 / sent)
    out = {}
    for name, a in acc.items():
        out[name] = {"p50_ms": pct(a["times"], 0.5), "p99_ms": pct(a["times"], 0.99), "requests": len(a["times"]),
                     "cpu_ms_per_request": "-" if name == "direct" else round(statistics.median(a["cpu"]), 3),
                     "emulator_cpu_ms_per_request": round(statistics.median(a["emu"]), 3),
                     "upstream_body_bytes": sizes.get(name, "-")}
    for v in out.values():
        v["p50_vs_direct_ms"] = round(v["p50_ms"] - out["direct"]["p50_ms"], 3)
    return {"scenario": f"messages, whole answers: {n} sequential requests per target, keep-alive, "
                        f"{rounds} alternating rounds, one gateway", "results": out}


def _is_text(event: bytes) -> bool:
    """A chat chunk with content, or a Messages `content_block_delta` (reasoning is off: the text's)."""
    data = next((line[5:] for line in event.splitlines() if line.startswith(b"data:")), b"[DONE]")
    if data.strip() == b"[DONE]":
        return False
    parsed = json.loads(data)
    if parsed.get("type") == "content_block_delta":
        return True
    return any((c.get("delta") or {}).get("content") for c in parsed.get("choices") or ())


def _streams(p: Procs, emu: str, gateway: str, runs: int, gap_ms: int) -> dict:
    targets, _ = _targets(emu, gateway, stream=True)
    set_emulator_switches(emu, gap_ms=gap_ms, reasoning=False)
    clients = {name: httpx.Client(timeout=60, trust_env=False) for name in targets}
    firsts: dict[str, list[float]] = {name: [] for name in targets}
    texts: dict[str, list[list[float]]] = {name: [] for name in targets}
    cpu = dict.fromkeys(targets, 0.0)
    try:
        for run in range(runs + 1):  # the first run warms up; then one stream of each target per round
            for name, (url, req) in targets.items():
                before = p.cpu_s("gateway")
                events = sse_events(clients[name], url, req)
                if run:
                    cpu[name] += p.cpu_s("gateway") - before
                    firsts[name].append(events[0][0] * 1000)
                    texts[name].append([t for t, e in events if _is_text(e)])
    finally:
        for c in clients.values():
            c.close()
    out = {}
    for name in targets:
        first_text = [s[0] * 1000 for s in texts[name]]
        out[name] = {"first_event_ms_median": round(statistics.median(firsts[name]), 2),
                     "first_text_ms_median": round(statistics.median(first_text), 2),
                     "first_text_ms_max": round(max(first_text), 2),
                     "text_chunks": statistics.median([len(s) for s in texts[name]]),
                     **gap_stats(texts[name], gap_ms),
                     "cpu_ms_per_stream": "-" if name == "direct" else round(cpu[name] * 1000 / runs, 1)}
    base = out["direct"]["first_text_ms_median"]
    for v in out.values():
        v["first_text_vs_direct_ms"] = round(v["first_text_ms_median"] - base, 2)
    return {"scenario": f"messages, streams: {runs} alternating rounds of one stream per target, "
                        f"~40 pieces of text {gap_ms} ms apart, one gateway", "results": out}


def bench_messages(n: int, rounds: int, runs: int, gap_ms: int) -> list[dict]:
    """Whole answers, then streams, of both client dialects through the same gateway and emulator."""
    with Procs() as p:
        emu = p.emulator()
        gateway = p.gateway(emu)
        return [_whole(p, emu, gateway, n, rounds), _streams(p, emu, gateway, runs, gap_ms)]
