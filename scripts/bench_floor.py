"""The floor (scripts/bench.py floor): the gateway against bare mitmdump for a small chat request — p50 at
concurrency 1, requests/s at concurrency 16, CPU per request and RSS after 10,000 requests — in one run,
beside bare mitmdump with the gateway's hook dispatch and nothing else of the gateway (scripts/
floor_dispatch.py: the floor the gateway's own work is measured against, `vs_floor`), bare mitmdump with
both of the gateway's seams on mitmproxy's request path (scripts/floor_seams.py: the hook dispatch and the
message checks), and more gateways when asked:

    QWEN_BENCH_BASELINE=DIR   another checkout's gateway (its own .venv and addons/qwen.py): before a change
    QWEN_BENCH_KEYS=1         the gateway with a named client key (`qwen-keys add`, generous limits)
    QWEN_BENCH_PG=1           the gateway with its state on PostgreSQL (`qwen_state_url`, a server started
                              as tests/helpers/pgserver.py does); with both: one more with keys and PostgreSQL
    QWEN_BENCH_OWN_CLIENT=1   the floor with scripts/floor_own_client.py too: the gateway's shape (an async hook,
                              the gateway's upstream client) without its logic — the gap split in two
    QWEN_BENCH_LONG=1         an agent's long conversation (bench_http.long_conversation: 202 messages, 60 kB)
                              instead of the small request: the work the gateway does per message

The load comes from wrk (Debian's `wrk`): a C client that leaves the two cores to the proxies, where a
Python client competes with them. The targets alternate in rounds (each round starts with the next target)
so the machine's drift hits them alike; figures are medians over the rounds, with their range. Bare
mitmdump sends what the gateway sends upstream (qwen-code's request shape), so the emulator does the same
work for both (its CPU per request is in each row to show it). The emulator and wrk share the two cores with
the proxy, so req/s at 16 understates a proxy's own cost — the slower proxy leaves them more CPU —; in
front of a remote Qwen a proxy has its core to itself and serves 1 / its CPU per request: `vs_floor_cpu`.
Nothing here asserts: it measures.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from bench_http import CHAT, Req, as_sent_upstream, chat, long_conversation
from benchlib import BIN, ROOT, Procs, revision

# bare mitmdump with the gateway's hook dispatch (seams/hook_dispatch.py) and nothing else: the floor
FLOOR = "mitmdump + the hook dispatch alone"
# and with the gateway's other seam on mitmproxy's request path (seams/message_checks.py): mitmproxy as fast as
# the gateway makes it, so that the gap to the gateway is its own work alone
FLOOR_SEAMS = "mitmdump + the hook dispatch and the message checks"
DISPATCH_ONLY = ROOT / "scripts" / "floor_dispatch.py"
OWN_CLIENT = ROOT / "scripts" / "floor_own_client.py"
SEAMS = ROOT / "scripts" / "floor_seams.py"
# the target: the gateway's own work at most about a tenth of what mitmproxy costs a request
TARGET_VS_FLOOR, TARGET_P50_MS = 0.9, 0.1  # ≥ 0.9× the floor's req/s at 16, p50 within 0.1 ms of the floor's
RSS_AFTER = 10_000  # requests each target has served when its RSS is read
LONG = bool(os.environ.get("QWEN_BENCH_LONG"))
WRK = shutil.which("wrk") or "/usr/bin/wrk"


def lua(req: Req) -> str:
    """A wrk script POSTing `req` and printing its summary as one JSON line."""
    _, headers, body = req
    lines = ['wrk.method = "POST"', f"wrk.body = [==[{body.decode()}]==]"]
    lines += [f"wrk.headers[ [==[{k}]==] ] = [==[{v}]==]" for k, v in headers.items()]
    lines.append('''done = function(s, latency, requests)
  local e = s.errors
  io.write(string.format('WRK {"requests": %d, "us": %d, "p50_us": %d, "p99_us": %d, "errors": %d, "non2xx": %d}\\n',
    s.requests, s.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end''')
    return "\n".join(lines) + "\n"


def wrk(url: str, script: Path, connections: int, seconds: float) -> dict:
    out = subprocess.run([WRK, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(script),
                          url], capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRK ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {out.stdout[-500:]} {out.stderr[-500:]}")
    got = json.loads(line[4:])
    if got["errors"] or got["non2xx"]:
        raise RuntimeError(f"{url}: {got['errors']} errors, {got['non2xx']} answers not 2xx")
    return got


class Target:
    def __init__(self, name: str, proc: str, url: str, req: Req, script: Path) -> None:
        self.name, self.proc, self.url, self.req, self.script = name, proc, url, req, script
        self.p50: list[float] = []
        self.p99: list[float] = []
        self.rps: list[float] = []
        self.cpu: list[float] = []
        self.emu_cpu: list[float] = []  # the emulator's CPU for this target's requests: the same work for all
        self.served = 0


def _key(home: Path, name: str, state_url: str | None) -> str:
    """A named client key in a gateway's state folder, or its shared database (`qwen-keys add`, a limit
    nobody reaches here: the limiter's work is counted, never its refusals)."""
    tool = BIN / "qwen-keys"
    if not tool.exists():
        raise RuntimeError("QWEN_BENCH_KEYS: this checkout has no qwen-keys (the team gateway's named keys)")
    out = subprocess.run([str(tool), "add", name, "--rpm", "10000000", *(["--state-url", state_url] if state_url
                                                                         else [])],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "QWEN_GATEWAY_HOME": str(home)})
    if out.returncode:
        raise RuntimeError(f"qwen-keys add failed: {out.stdout[-300:]} {out.stderr[-300:]}")
    return out.stdout.strip().splitlines()[-1]


def floor_targets(p: Procs, emu: str) -> list[Target]:
    client = chat("client-key-ignored", long_conversation() if LONG else CHAT)
    gateway = p.gateway(emu)
    upstream = as_sent_upstream(emu, gateway, client)
    bare = p.mitmdump("bare", emu, addon=False)
    dispatch = p.mitmdump("dispatch", emu, addon=False, args=("-s", str(DISPATCH_ONLY)))
    seams = p.mitmdump("seams", emu, addon=False, args=("-s", str(SEAMS)))
    found = [("mitmdump (no addon)", "bare", bare, upstream),
             (FLOOR, "dispatch", dispatch, upstream),
             (FLOOR_SEAMS, "seams", seams, upstream),
             ("gateway", "gateway", gateway, client)]
    if os.environ.get("QWEN_BENCH_OWN_CLIENT"):
        found.append(("the floor with its own upstream client", "own",
                      p.mitmdump("own", emu, addon=False, args=("-s", str(DISPATCH_ONLY), "-s", str(OWN_CLIENT))),
                      upstream))
    baseline = os.environ.get("QWEN_BENCH_BASELINE")
    if baseline:
        found.append((f"gateway at {revision(Path(baseline))}", "baseline",
                      p.gateway(emu, "baseline", checkout=Path(baseline)), client))
    keys, pg = os.environ.get("QWEN_BENCH_KEYS"), os.environ.get("QWEN_BENCH_PG")
    server = None
    if pg:
        sys.path.insert(0, str(ROOT / "tests"))
        from helpers.pgserver import PgServer, unavailable
        if (why := unavailable()) is not None:
            raise RuntimeError(f"QWEN_BENCH_PG: {why}")
        server = p.pg = PgServer().start()
    variants = [("named keys", True, False)] if keys else []
    variants += [("PostgreSQL shared state", False, True)] if pg else []
    variants += [("named keys and PostgreSQL", True, True)] if keys and pg else []
    for label, with_key, with_pg in variants:
        name = "gw-" + label.split()[0].lower() + ("-pg" if with_key and with_pg else "")
        url = server.new_database() if with_pg and server else None
        args = ("--set", f"qwen_state_url={url}") if url else ()
        req = client
        if with_key:
            home = p.tmp / f"state-{name}"
            home.mkdir(mode=0o700, exist_ok=True)
            key = _key(home, "bench", url)
            req = (client[0], {**client[1], "authorization": f"Bearer {key}"}, client[2])
        found.append((f"gateway, {label}", name, p.gateway(emu, name, args=args), req))
    out = []
    for name, proc, url, req in found:
        script = p.tmp / f"{proc}.lua"
        script.write_text(lua(req))
        out.append(Target(name, proc, url + req[0], req, script))
    return out


def bench_floor(rounds: int, seconds: float) -> dict:
    if not Path(WRK).exists():
        raise SystemExit("bench.py floor needs wrk (Debian: apt-get install wrk)")
    with Procs() as p:
        emu = p.emulator()
        try:
            targets = floor_targets(p, emu)
            for t in targets:  # warm: connections, imports, caches, the first rows of every database
                t.served += wrk(t.url, t.script, 16, 1)["requests"]
            for r in range(rounds):
                order = targets[r % len(targets):] + targets[:r % len(targets)]
                for t in order:
                    cpu0, emu0 = p.cpu_s(t.proc), p.cpu_s("emulator")
                    one = wrk(t.url, t.script, 1, seconds)
                    many = wrk(t.url, t.script, 16, seconds)
                    t.served += one["requests"] + many["requests"]
                    t.emu_cpu.append((p.cpu_s("emulator") - emu0) * 1000 / (one["requests"] + many["requests"]))
                    t.p50.append(one["p50_us"] / 1000)
                    t.p99.append(one["p99_us"] / 1000)
                    t.rps.append(many["requests"] / (many["us"] / 1e6))
                    t.cpu.append((p.cpu_s(t.proc) - cpu0) * 1000 / (one["requests"] + many["requests"]))
            for t in targets:  # RSS once every target has served as many requests
                while t.served < RSS_AFTER:
                    t.served += wrk(t.url, t.script, 16, 2)["requests"]
            rows = _rows(p, targets)
            what = "an agent's long conversation (202 messages, 60 kB)" if LONG else "a small chat request"
            gw = rows["gateway"]
            rps = {t.proc: statistics.median(t.rps) for t in targets}
            met = rps["gateway"] / rps["dispatch"] >= TARGET_VS_FLOOR and gw["p50_vs_floor_ms"] <= TARGET_P50_MS
            return {"scenario": f"floor: {what}, wrk, {rounds} alternating rounds of {seconds:g} s "
                                "at concurrency 1 and 16 (medians, [min–max]); the gateway: "
                                f"{rows['gateway']['vs_floor']} of {FLOOR} in req/s at 16 "
                                f"({rows['gateway']['vs_floor_cpu']} on a core of its own), p50 "
                                f"{rows['gateway']['p50_vs_floor_ms']:+.3f} ms; of {FLOOR_SEAMS}: "
                                f"{_ratio(targets, 'gateway', 'seams')} in req/s at 16; the target (≥ "
                                f"{TARGET_VS_FLOOR}× of the floor, p50 within {TARGET_P50_MS} ms): "
                                f"{'met' if met else 'not met'}",
                    "target_met": met,
                    "results": rows}
        finally:
            server = getattr(p, "pg", None)
            if server is not None:
                p.__exit__()  # the gateways first: they hold connections to the server
                server.stop()


def _ratio(targets: list[Target], proc: str, of: str) -> str:
    by = {t.proc: statistics.median(t.rps) for t in targets}
    return f"{by[proc] / by[of]:.2f}×"


def _rows(p: Procs, targets: list[Target]) -> dict:
    bare, floor = targets[0], targets[1]
    bare_p50, bare_rps = statistics.median(bare.p50), statistics.median(bare.rps)
    floor_p50, floor_rps = statistics.median(floor.p50), statistics.median(floor.rps)
    floor_cpu = statistics.median(floor.cpu)
    out = {}
    for t in targets:
        p50, rps = statistics.median(t.p50), statistics.median(t.rps)
        out[t.name] = {
            "p50_ms": f"{p50:.3f} [{min(t.p50):.3f}–{max(t.p50):.3f}]",
            "p50_vs_bare_ms": round(p50 - bare_p50, 3),
            "p50_vs_floor_ms": round(p50 - floor_p50, 3),  # the floor: bare + the hook dispatch alone
            "p99_ms": round(statistics.median(t.p99), 3),
            "req_per_s_c16": f"{rps:.0f} [{min(t.rps):.0f}–{max(t.rps):.0f}]",
            "vs_bare": f"{rps / bare_rps:.2f}×",
            "vs_floor": f"{rps / floor_rps:.2f}×",
            "cpu_ms_per_request": round(statistics.median(t.cpu), 3),
            # req/s on a core of its own (as in front of a remote Qwen): the floor's CPU per request over this one's
            "vs_floor_cpu": f"{floor_cpu / statistics.median(t.cpu):.2f}×",
            "emulator_cpu_ms_per_request": round(statistics.median(t.emu_cpu), 3),
            "rss_mb": round(p.rss_mb(t.proc), 1),
            "requests_served": t.served,
        }
    return out

