"""The per-request cost of the client-key check and the named keys' counters (scripts/bench.py keys): whole
answers through bare mitmdump and through gateways that differ only in their client keys, in one run with
alternating rounds. With PostgreSQL installed (tests/helpers/pgserver.py), a gateway on shared state with a
limited named key too: its limits are generous, so the leases make database round trips rare."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys


from bench_http import CHAT, body_for, chat, hammer, pct, timed
from benchlib import BIN, ROOT, Procs, gateway_state_dir

LIMITS = ("--rpm", "10000000", "--tpm", "1000000000000", "--daily-tokens", "1000000000000", "--monthly-usd", "1000000")


def _add_key(env: dict[str, str], *limits: str) -> str:
    out = subprocess.run([str(BIN / "qwen-keys"), "add", "bench", *limits], capture_output=True, text=True,
                         check=True, env={**os.environ, **env}).stdout
    return out.strip().splitlines()[-1]


def _postgres():
    """A PostgreSQL server for the shared-state target, or None (not installed here)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers import pgserver

    if pgserver.unavailable():
        return None
    return pgserver.PgServer().start()


def micro(n: int = 200_000) -> dict:
    """The gateway's own work per request for a key, in this process (no network, no scheduler noise from
    the other processes' sockets): the entrance check, the limits before upstream, the spend after."""
    import time

    from qwen_gateway.settings.config import Config
    from qwen_gateway.tenancy.ring import Keyring, KeyRecord, digest, new_key
    from qwen_gateway.tenancy.team import Team
    from qwen_gateway.exchange import ClientRequest, Exchange

    keys = [new_key() for _ in range(1000)]
    flat = tuple(k.encode() for k in keys[:1])
    out: dict[str, dict] = {}

    def per_call(fn, rounds: int = n) -> float:
        best = float("inf")
        for _ in range(5):  # the best of five: the machine is shared
            t0 = time.perf_counter()
            for _ in range(rounds):
                fn()
            best = min(best, (time.perf_counter() - t0) / rounds * 1e6)
        return round(best, 3)

    team = Team()
    team.configure(Config())
    out["check: no keys"] = {"us_per_request": per_call(lambda: team.check(b"", ()))}
    out["check: a flat key"] = {"us_per_request": per_call(lambda: team.check(flat[0], flat))}
    team.ring = Keyring(tuple(KeyRecord(f"k{i}", digest(k.encode())) for i, k in enumerate(keys)))
    presented = keys[500].encode()
    out["check: a named key among 1,000"] = {"us_per_request": per_call(lambda: team.check(presented, ()))}
    limited = KeyRecord("limited", digest(b"x"), rpm=10**9, tpm=10**12, daily_tokens=10**12, monthly_usd=1e9)
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://x/v1/chat/completions", size=400))
    ex.result.usage, ex.key.name = {"prompt_tokens": 100, "completion_tokens": 20}, "limited"

    async def limits(rounds: int) -> None:
        for _ in range(rounds):
            ex.extra = {"key": limited}
            await team.limit(ex)

    def run_limits() -> None:
        asyncio.run(limits(1000))

    out["limits: rpm, tpm, daily, monthly (one gateway)"] = {"us_per_request": round(per_call(run_limits, n // 1000)
                                                                                      / 1000, 3)}

    def finish() -> None:
        ex.extra = {"key": limited, "taken": []}
        team.finished(ex, None)  # type: ignore[arg-type]

    out["spend: counted when finished"] = {"us_per_request": per_call(finish)}
    return {"scenario": f"the key check and counters in process, best of 5 × {n:,} calls", "results": out}


def bench_keys(n: int, total: int, concurrency: int = 16, rounds: int = 4) -> list[dict]:
    pg = _postgres()
    try:
        with Procs() as p:
            emu = p.emulator()
            targets: dict[str, tuple[str, str, str]] = {  # name -> (url, client key, process)
                "mitmdump (no addon)": (p.mitmdump("bare", emu, addon=False), "sk-bench", "bare"),
                "gateway, no client keys": (p.gateway(emu, "gateway"), "none", "gateway")}
            targets["gateway, a flat key (QWEN_GATEWAY_KEYS)"] = (
                p.gateway(emu, "gw-flat", env={"QWEN_GATEWAY_KEYS": "sk-bench-flat"}), "sk-bench-flat", "gw-flat")
            for name, limits in (("gw-named", ()), ("gw-limited", LIMITS)):
                key = _add_key({"QWEN_GATEWAY_HOME": str(gateway_state_dir(p, name))}, *limits)
                label = "gateway, a named key" + (" with rpm, tpm, daily and monthly limits" if limits else "")
                targets[label] = (p.gateway(emu, name), key, name)
            if pg is not None:  # shared state costs by itself (ledger, account state): its own baseline
                url = pg.new_database()
                targets["gateway, shared state (PostgreSQL), no client keys"] = (
                    p.gateway(emu, "gw-shared-open", args=("--set", f"qwen_state_url={url}")), "none", "gw-shared-open")
                url = pg.new_database()
                key = _add_key({"QWEN_STATE_URL": url, "QWEN_GATEWAY_HOME": str(p.tmp / "cli")}, *LIMITS)
                targets["gateway, shared state (PostgreSQL), a named key with those limits"] = (
                    p.gateway(emu, "gw-shared", args=("--set", f"qwen_state_url={url}")), key, "gw-shared")
            out: dict[str, dict] = {}
            for round_ in range(rounds):  # alternating: the machine's drift hits every target alike
                for name, (url, key, proc) in targets.items():
                    req = chat(key, body_for("gateway" if proc != "bare" else "bare", CHAT))
                    acc = out.setdefault(name, {"times": [], "rps": [], "cpu": []})
                    before = p.cpu_s(proc)
                    acc["times"] += timed(url, req, n // rounds, warmup=30 if round_ == 0 else 5)
                    acc["rps"].append(asyncio.run(hammer(url, req, total // rounds, concurrency)))
                    sent = n // rounds + (30 if round_ == 0 else 5) + 2 * (total // rounds)
                    acc["cpu"].append((p.cpu_s(proc) - before) * 1000 / sent)
            for acc in out.values():
                times, rps, cpu = acc.pop("times"), acc.pop("rps"), acc.pop("cpu")
                acc.update(p50_ms=pct(times, 0.5), p99_ms=pct(times, 0.99),
                           requests_per_s=round(statistics.median(rps), 1),
                           cpu_ms_per_request=round(statistics.median(cpu), 3))
            bare, plain = out["mitmdump (no addon)"], out["gateway, no client keys"]
            for v in out.values():
                v["vs_bare"] = f"{v['requests_per_s'] / bare['requests_per_s']:.0%}"
                v["cpu_vs_no_keys_ms"] = round(v["cpu_ms_per_request"] - plain["cpu_ms_per_request"], 3)
            return [micro(), {"scenario": f"client keys: {n} sequential and {total} concurrent ({concurrency}) whole answers "
                                 f"per target, {rounds} alternating rounds", "results": out}]
    finally:
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    print(bench_keys(int(sys.argv[1]) if len(sys.argv) > 1 else 200, 2000))
