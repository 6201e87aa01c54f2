"""What token counting adds to a 1 MB prompt: the gateway with `qwen_token_count=true` vs `false`.

    .venv/bin/python scripts/bench_tokens.py                   # 20 requests per target, 1 MiB prompt
    .venv/bin/python scripts/bench_tokens.py --order blocks -n 40
    .venv/bin/python scripts/bench_tokens.py -n 100 --size 2097152 --json

Starts the Qwen emulator (answering "ok", so the answer stays small) and two gateways on loopback
(`mitmdump -s addons/qwen.py`, every addon on; one with `--set qwen_token_count=false`), then sends the
same non-stream chat request with a 1 MiB prompt (word salad, ~1.07 MB of JSON) to each, after warm-up,
one keep-alive client per target, and reports the latency the client sees: median, p95, mean, min, max.

Orders:
  interleaved (default)  on, off, off, on, …; after each request to the counting gateway the script waits
                         until its estimate is in the ledger, so that count never overlaps the other
                         gateway's request: the difference is what counting adds to the request itself.
  blocks                 n/2 on, n/2 off, n/2 off, n/2 on, each block back to back (counts of one request
                         overlap the next ones: sustained load); the backlog drains between blocks.

Finally it checks, from the counting gateway's usage ledger, that every request got an estimate.
Figures are recorded in docs/observability.md. Nothing here asserts timings: it measures.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import Procs, gateway_state_dir, machine, percentile, set_emulator_switches  # noqa: E402

WORDS = ("the of and to in is that for it as was with be by on not he this are or his from at which but have an "
         "they you were her she there been one all we their has would when if so no will can more about said "
         "gateway token stream request response model account quota context prompt usage latency metrics "
         "function def return import class self value error retry, offline encoding, 2024 100 3.14 (x) [y] {z}").split()


def prompt_text(size: int, seed: int = 7) -> str:
    """`size` characters of word salad: varied enough that the tokenizer does real work."""
    rng = random.Random(seed)
    out, n = [], 0
    while n < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 18))).capitalize() + ".\n"
        out.append(line)
        n += len(line)
    return "".join(out)[:size]


def body_bytes(size: int) -> bytes:
    body = {"model": "gpt-4o", "messages": [{"role": "system", "content": "Answer briefly."},
                                            {"role": "user", "content": prompt_text(size)}]}
    return json.dumps(body).encode()


def ledger_estimates(state: Path, expected: int, timeout: float = 15.0,
                     estimates: bool = True) -> tuple[int, int, str | None]:
    """(rows, rows with an estimate, token_method) of a gateway's ledger, once `expected` rows (with an
    estimate, unless `estimates` is false) are in."""
    path = state / "usage.sqlite3"
    deadline = time.monotonic() + timeout
    rows = est = 0
    method = None
    while time.monotonic() < deadline:
        if path.exists():
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                rows, est = db.execute("SELECT COUNT(*), COUNT(est_tokens) FROM usage").fetchone()
                method = (db.execute("SELECT token_method FROM usage WHERE token_method IS NOT NULL LIMIT 1")
                          .fetchone() or (None,))[0]
            except sqlite3.Error:
                pass
            finally:
                db.close()
            if rows >= expected and (est >= expected or not estimates):
                break
        time.sleep(0.1)
    return rows, est, method


def run(n: int, size: int, warmup: int, pause_ms: int = 0, order: str = "interleaved", aa: bool = False) -> dict:
    content = body_bytes(size)
    with Procs() as p:
        emu = p.emulator()
        set_emulator_switches(emu, reply="ok")
        off = ("--set", "qwen_token_count=false")
        # A/A control: the "on" gateway does not count either; the difference is then pure noise
        targets = {
            "counting on": ("gateway-on", p.gateway(emu, "gateway-on", args=off if aa else ())),
            "counting off": ("gateway-off", p.gateway(emu, "gateway-off", args=off)),
        }
        clients = {name: httpx.Client(base_url=url, timeout=60, trust_env=False,
                                      headers={"authorization": "Bearer bench", "content-type": "application/json"})
                   for name, (_, url) in targets.items()}
        times: dict[str, list[float]] = {name: [] for name in targets}
        on_state = gateway_state_dir(p, "gateway-on")
        sent_on = 0
        lags: list[float] = []
        names = list(targets)
        if order == "interleaved":  # on, off, off, on, …: one request per block
            blocks = [(name, 1, i >= warmup) for i in range(warmup + n)
                      for name in (names if i % 2 == 0 else names[::-1])]
        else:  # warm-up, then ABBA blocks of n/2 back-to-back requests
            blocks = [(name, warmup, False) for name in names]
            blocks += [(name, n // 2, True) for name in (*names, *names[::-1])]
        try:
            for name, count, measured in blocks:
                for _ in range(count):
                    t0 = time.perf_counter()
                    r = clients[name].post("/v1/chat/completions", content=content)
                    dt = (time.perf_counter() - t0) * 1000
                    r.raise_for_status()
                    if measured:
                        times[name].append(dt)
                    if pause_ms:
                        time.sleep(pause_ms / 1000)
                if targets[name][0] == "gateway-on":
                    # let the counting gateway finish its backlog (estimates land in its ledger, batched
                    # every 0.5 s) so that the next block starts on a quiet machine
                    sent_on += count
                    t0 = time.perf_counter()
                    ledger_estimates(on_state, sent_on, estimates=not aa)
                    if measured:
                        lags.append((time.perf_counter() - t0) * 1000)
        finally:
            for c in clients.values():
                c.close()
        rows, est, method = ledger_estimates(gateway_state_dir(p, "gateway-on"), warmup + n, estimates=not aa)
        off_rows, off_est, _ = ledger_estimates(gateway_state_dir(p, "gateway-off"), warmup + n, timeout=5,
                                                estimates=False)
    out = {}
    for name, xs in times.items():
        out[name] = {"p50_ms": round(statistics.median(xs), 2), "p95_ms": round(percentile(xs, 0.95), 2),
                     "mean_ms": round(statistics.fmean(xs), 2), "min_ms": round(min(xs), 2),
                     "max_ms": round(max(xs), 2), "requests": len(xs)}
    on, off = out["counting on"], out["counting off"]
    return {
        "scenario": f"{size / (1 << 20):.2f} MiB prompt ({len(content):,} bytes of JSON), {n} non-stream requests "
                    f"per target after {warmup} warm-up, {order}, " + ("A/A CONTROL (neither counts), " if aa else "") +
                    f"{pause_ms} ms between requests",
        "results": out,
        "difference_ms": {"p50": round(on["p50_ms"] - off["p50_ms"], 2), "p95": round(on["p95_ms"] - off["p95_ms"], 2),
                          "mean": round(on["mean_ms"] - off["mean_ms"], 2)},
        "estimates": {"ledger_rows": rows, "rows_with_estimate": est, "token_method": method,
                      "drain_ms_max": round(max(lags), 1) if lags else None,
                      "counting_off_rows_with_estimate": off_est, "counting_off_rows": off_rows},
        "machine": machine(),
    }


def table(result: dict) -> str:
    cols = ["p50_ms", "p95_ms", "mean_ms", "min_ms", "max_ms", "requests"]
    lines = [result["scenario"], "", "| target | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, v in result["results"].items():
        lines.append(f"| {name} | " + " | ".join(str(v[c]) for c in cols) + " |")
    d = result["difference_ms"]
    lines.append(f"| on − off | {d['p50']:+} | {d['p95']:+} | {d['mean']:+} | | | |")
    e = result["estimates"]
    lines += ["", f"estimates: {e['rows_with_estimate']}/{e['ledger_rows']} ledger rows of the counting gateway "
                  f"({e['token_method']}); counting off: {e['counting_off_rows_with_estimate']}/"
                  f"{e['counting_off_rows']}; slowest wait for the counting gateway's estimates to reach its "
                  f"ledger after "
                  f"a block: {e['drain_ms_max']} ms (ledger batches every 500 ms)",
              f"machine: {result['machine']['cpu_count']} cores, Python {result['machine']['python']}, "
              f"mitmproxy {result['machine']['mitmproxy']}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--requests", type=int, default=20, help="measured requests per target (default 20)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--size", type=int, default=1 << 20, help="prompt characters (default 1 MiB)")
    ap.add_argument("--pause-ms", type=int, default=0, help="pause after each request (default 0)")
    ap.add_argument("--order", choices=["interleaved", "blocks"], default="interleaved",
                    help="interleaved (default): on, off, off, on, …, the counting gateway's backlog drained after "
                         "each of its requests; blocks: n/2 on, n/2 off, n/2 off, n/2 on, back to back (sustained)")
    ap.add_argument("--aa", action="store_true", help="control run: both gateways with counting off (noise floor)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    a = ap.parse_args(argv)
    result = run(a.requests, a.size, a.warmup, a.pause_ms, a.order, a.aa)
    print(json.dumps(result, indent=2) if a.json else table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
