"""A far upstream (50 ms each way): a new client connection per request vs keep-alive (scripts/bench.py)."""

from __future__ import annotations

import os
import ssl
import time

import httpx

from bench_http import CHAT, body_for, pct
from benchlib import Procs


def _ask(url: str, key: str, body: dict, n: int, *, new_connection: bool) -> list[float]:
    """Milliseconds per request: each on a new connection (as CLI tools do), or all on one kept alive."""
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
                assert client is not None
                client.post(url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
                            ).raise_for_status()
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        if client is not None:
            client.close()
    return times[2:]  # the first two warm the path up


def bench_far(n: int, delay_ms: int) -> dict:
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
            body = {**CHAT, "model": "qwen"} if name == "LiteLLM proxy" else body_for(name, CHAT)
            fresh = _ask(url, key, body, n, new_connection=True)
            kept = _ask(url, key, body, n, new_connection=False)
            out[name] = {"new_connection_p50_ms": pct(fresh, 0.5), "keepalive_p50_ms": pct(kept, 0.5),
                         "difference_ms": round(pct(fresh, 0.5) - pct(kept, 0.5), 1)}
        return {"scenario": f"far upstream: {delay_ms} ms each way, {n} sequential non-stream requests per column",
                "results": out}
