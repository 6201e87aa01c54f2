"""Benchmarks, all in one run against the emulator: direct, bare mitmdump, and the gateway.

    .venv/bin/python scripts/bench.py stream      # time to first chunk and gap fidelity of a 2 s stream
    .venv/bin/python scripts/bench.py latency     # non-stream p50/p99 at concurrency 1
    .venv/bin/python scripts/bench.py throughput  # requests/s at concurrency 16
    .venv/bin/python scripts/bench.py floor       # the gateway vs bare mitmdump (and QWEN_BENCH_BASELINE, _KEYS,
                                                  # _PG): p50 at c1, req/s at c16, CPU (and the ratio by CPU), the
                                                  # emulator's CPU, RSS after 10,000, with wrk
    .venv/bin/python scripts/bench.py instructions # callgrind: instructions per request, the gateway vs the floor
                                                  # (bare mitmdump + the hook dispatch); --requests (400)
    .venv/bin/python scripts/bench.py profile     # py-spy on the gateway and bare mitmdump under wrk: CPU by part
                                                  # (QWEN_BENCH_KEYS, _PG: those gateways too)
    .venv/bin/python scripts/bench.py messages    # /v1/messages vs /v1/chat/completions in one gateway: p50/p99
                                                  # and CPU of whole answers, first chunk and gaps of streams
    .venv/bin/python scripts/bench.py first       # the first Messages stream after a start vs the second (--rounds
                                                  # fresh gateways; QWEN_BENCH_BASELINE too)
    .venv/bin/python scripts/bench.py bigprompt   # a 1 MB prompt; token counting on vs off
    .venv/bin/python scripts/bench.py memory      # gateway RSS after 5,000 and 20,000 requests
    .venv/bin/python scripts/bench.py webmemory   # mitmweb RSS over 5,000 requests, flow cap on vs off
    .venv/bin/python scripts/bench.py far         # a far upstream (50 ms each way): new connection per request vs
                                                  # keep-alive; LiteLLM too when $QWEN_BENCH_LITELLM names its binary
    .venv/bin/python scripts/bench.py concurrency # 400 streams of 20 events 250 ms apart opened together (--streams,
                                                  # --stream-gap-ms, --events, --rounds): gaps, first event, RSS, CPU
    .venv/bin/python scripts/bench.py retry       # first chunk of a stream that needed a 401 refresh vs one that did not
    .venv/bin/python scripts/bench.py keys        # the client-key check and named keys' counters: no keys, a flat key,
                                                  # a named key with and without limits, shared state (PostgreSQL)
    .venv/bin/python scripts/bench.py affinity    # 3 key accounts, 12 concurrent conversations of 6 turns: turns on
                                                  # their first account, cache hits, input cost (QWEN_BENCH_BASELINE:
                                                  # against that checkout's round-robin); the look-up's own cost
    .venv/bin/python scripts/bench.py native      # one 20-turn Codex-like Responses session, translated vs Qwen's
                                                  # own Responses API + session cache: tokens, cache, USD (ledger)
    .venv/bin/python scripts/bench.py selfnative  # a team's 2026 vLLM: Claude Code and Codex sessions translated by the
                                                  # gateway vs passed to the server's own /v1/messages, /v1/responses
    .venv/bin/python scripts/bench.py all --json

Results are recorded in docs/performance.md. Nothing here asserts: it measures. The scenarios live in
bench_floor.py (the gateway against bare mitmdump with wrk), bench_load.py (whole answers, memory), bench_stream.py (streams, retries), bench_far.py, bench_messages.py;
the client side they share in bench_http.py, the processes in benchlib.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_affinity import bench_affinity  # noqa: E402
from bench_concurrency import bench_concurrency  # noqa: E402
from bench_far import bench_far  # noqa: E402
from bench_first import bench_first  # noqa: E402
from bench_floor import bench_floor  # noqa: E402
from bench_instructions import bench_instructions  # noqa: E402
from bench_native import bench_native  # noqa: E402
from bench_selfnative import bench_selfnative  # noqa: E402
from bench_keys import bench_keys  # noqa: E402
from bench_profile import bench_profile  # noqa: E402
from bench_load import bench_bigprompt, bench_latency, bench_memory, bench_throughput, bench_webmemory  # noqa: E402
from bench_messages import bench_messages  # noqa: E402
from bench_stream import bench_retry, bench_stream  # noqa: E402
from benchlib import machine  # noqa: E402


def table(result: dict) -> str:
    rows = result["results"]
    cols = list(next(iter(rows.values())))
    lines = ["| target | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(str(v[c]) for c in cols) + " |" for name, v in rows.items()]
    return f"{result['scenario']}\n\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    scenarios = {  # each gives one result (a table) or a list of them
        "stream": lambda a: bench_stream(a.runs, a.gap_ms),
        "latency": lambda a: bench_latency(a.requests * 2, rounds=8),
        "throughput": lambda a: bench_throughput(a.requests * 10, 16, rounds=6),
        "floor": lambda a: bench_floor(a.rounds if a.rounds > 1 else 4, a.seconds),
        "profile": lambda a: bench_profile(max(a.seconds, 10)),
        "instructions": lambda a: bench_instructions(a.requests),
        "messages": lambda a: bench_messages(a.requests * 2, 8, a.runs, a.gap_ms),
        "first": lambda a: bench_first(a.rounds if a.rounds > 1 else 5),
        "bigprompt": lambda a: bench_bigprompt(20),
        "memory": lambda a: bench_memory((5000, 20000)),
        "webmemory": lambda a: bench_webmemory(5000, 1000),
        "far": lambda a: bench_far(min(a.requests, 40), 50),
        "retry": lambda a: bench_retry(min(a.requests, 30)),
        "concurrency": lambda a: bench_concurrency(a.streams, a.stream_gap_ms, a.events, a.rounds),
        "keys": lambda a: bench_keys(a.requests, a.requests * 10, 16, rounds=4),
        "affinity": lambda a: bench_affinity(),
        "native": lambda a: bench_native(),
        "selfnative": lambda a: bench_selfnative(),
    }
    ap.add_argument("scenario", choices=[*scenarios, "all"])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--gap-ms", type=int, default=50)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--streams", type=int, default=400, help="concurrency: streams opened together")
    ap.add_argument("--stream-gap-ms", type=int, default=250, help="concurrency: ms between a stream's events")
    ap.add_argument("--events", type=int, default=20, help="concurrency: events per stream")
    ap.add_argument("--rounds", type=int, default=1, help="concurrency, floor (default 4): alternating rounds")
    ap.add_argument("--seconds", type=int, default=5, help="floor: seconds of each wrk run")
    ap.add_argument("--json", action="store_true", help="print JSON instead of tables")
    a = ap.parse_args(argv)
    slow = ("profile", "instructions")  # py-spy; valgrind
    names = [n for n in scenarios if n not in slow] if a.scenario == "all" else [a.scenario]
    results = []
    for name in names:
        got = scenarios[name](a)
        for r in got if isinstance(got, list) else [got]:
            r["machine"] = machine()
            results.append(r)
            if not a.json:
                print(table(r) + "\n", flush=True)
    if a.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
