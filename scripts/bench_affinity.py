"""A conversation on its account (scripts/bench.py affinity): 3 key accounts on the emulator, 12 concurrent
conversations of 6 streamed turns each (an agent's: a 6 KB system prompt, the history growing by a turn), sent
through this tree's gateway and, with QWEN_BENCH_BASELINE=DIR, through that checkout's (round-robin) in the
same run. Per target: the share of later turns (2–6) served by their conversation's first account, the share
that read Qwen's cache (the emulator's explicit cache is per account, as Qwen's is: the gateway marks the
system prompt and a stream's last message), the prompt tokens read from it, what the input cost at the
built-in pay-as-you-go price of qwen3-coder-plus (cached tokens at its cached price), the emulator's cache hits
per account, and the gateway's CPU per request. Then the affinity look-up's own cost, in this process: the
conversation read from a Claude Code-sized request, and the pool's acquire with and without one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import tempfile
import time
from pathlib import Path

import httpx

from benchlib import Procs, revision

SYSTEM = "You are a coding agent working in a repository. " + "Follow the project's rules. " * 220  # ≈ 6 KB


def _accounts(procs: Procs, emulator: str, keys: list[str], name: str) -> dict[str, str]:
    state = procs.tmp / f"state-{name}"
    state.mkdir()
    (state / "accounts.json").write_text(json.dumps({"accounts": [
        {"name": f"k{i}", "kind": "key", "base_url": emulator + "/compatible-mode/v1", "key_env": f"BENCH_K{i}",
         "default_model": "qwen3-coder-plus"} for i in range(1, len(keys) + 1)]}))
    return {"QWEN_DIR": str(procs.tmp / f"qwen-{name}"), "QWEN_GATEWAY_HOME": str(state),
            **{f"BENCH_K{i}": k for i, k in enumerate(keys, 1)}}


def _turn(http: httpx.Client, url: str, messages: list[dict]) -> dict:
    """One streamed turn; the answer appended; its usage (the prompt tokens read from the cache in it)."""
    body = {"model": "gpt-4o", "messages": messages, "stream": True, "stream_options": {"include_usage": True}}
    text, usage = "", {}
    with http.stream("POST", url + "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("choices"):
                text += chunk["choices"][0]["delta"].get("content") or ""
            if chunk.get("usage"):
                usage = chunk["usage"]
    messages.append({"role": "assistant", "content": text})
    return usage


def _conversation(url: str, n: int, turns: int) -> list[dict]:
    with httpx.Client(timeout=120, trust_env=False) as http:
        messages = [{"role": "system", "content": f"[conversation {n}] {SYSTEM}"}]
        out = []
        for t in range(turns):
            messages.append({"role": "user", "content": f"step {t}: " + "look at the next file and fix it. " * 6})
            out.append(_turn(http, url, messages))
        return out


def _run(procs: Procs, name: str, url: str, emulator: str, keys: list[str], conversations: int, turns: int) -> dict:
    """One round through one target: what its conversations' turns did (counts, summable over rounds)."""
    from qwen_gateway.pricing import prices

    httpx.post(emulator + "/_emulator/reset", json={}, trust_env=False).raise_for_status()  # cache and counts
    httpx.post(emulator + "/_emulator/switches", trust_env=False,  # the emulator's stats name the accounts
               json={"key_accounts": {k: f"k{i}" for i, k in enumerate(keys, 1)}}).raise_for_status()
    cpu0 = procs.cpu_s(name)
    with concurrent.futures.ThreadPoolExecutor(conversations) as pool:
        usages = [u for conv in pool.map(lambda n: _conversation(url, n, turns), range(conversations)) for u in conv]
    cpu = procs.cpu_s(name) - cpu0
    account = {k: f"k{i}" for i, k in enumerate(keys, 1)}
    served: dict[str, list[str]] = {}
    for r in httpx.get(emulator + "/_emulator/requests", trust_env=False).json():
        if r["path"].endswith("/chat/completions"):
            conv = r["body"]["messages"][0]["content"]
            conv = conv if isinstance(conv, str) else "".join(p.get("text") or "" for p in conv)
            served.setdefault(conv.split("]")[0], []).append(account[r["headers"]["authorization"][7:]])
    later = [(accts[0], a) for accts in served.values() for a in accts[1:]]
    table = prices.builtin()  # each request priced as the ledger prices it (its own prompt's tier)
    cached = [((u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0) for u in usages]
    return {"requests": len(usages), "later": len(later), "on first": sum(f == a for f, a in later),
            "hits": sum(c > 0 for c in cached), "cached": sum(cached), "prompt": sum(u["prompt_tokens"] for u in usages),
            "usd": sum((table.cost("payg:intl", "qwen3-coder-plus", u) or (0.0, ""))[0] for u in usages),
            "per account": httpx.get(emulator + "/_emulator/stats", trust_env=False).json()["per_account"],
            "cpu_s": cpu}


def _table(rounds: list[dict]) -> dict:
    n = {k: sum(r[k] for r in rounds) for k in ("requests", "later", "on first", "hits", "cached", "prompt", "usd",
                                                "cpu_s")}
    per: dict[str, list[int]] = {}
    for r in rounds:
        for a, p in r["per account"].items():
            per.setdefault(a, [0, 0])
            per[a][0] += p["cache_hits"]
            per[a][1] += p["requests"]
    return {"turns": n["requests"], "later turns on the first account": f"{n['on first'] / n['later']:.0%}",
            "later turns that read the cache": f"{n['hits'] / n['later']:.0%}",
            "prompt tokens read from the cache": f"{n['cached'] / n['prompt']:.0%}",
            "input and output cost, USD": round(n["usd"], 4),
            "cache hits / requests per account": ", ".join(f"{a} {h}/{q}" for a, (h, q) in sorted(per.items())),
            "gateway CPU ms / request": round(n["cpu_s"] * 1000 / n["requests"], 2)}


def micro(n: int = 20_000) -> dict:
    """The look-up's own cost per request, in this process: the conversation of a Claude Code-sized request
    (a 7 KB system prompt, 40 messages), and the pool's acquire with a conversation it knows vs without one."""
    from qwen_gateway.api.conversation import of
    from qwen_gateway.auth.key_account import KeyAccount
    from qwen_gateway.upstream.pool.pool import AccountPool
    from qwen_gateway.auth.state import AccountState

    chat = {"messages": [{"role": "system", "content": SYSTEM + "x" * 1000},
                         *({"role": "user" if i % 2 else "assistant", "content": "some text " * 50} for i in range(40))]}
    claude = {"metadata": {"user_id": json.dumps({"device_id": "d" * 64, "account_uuid": "",
                                                  "session_id": "5d0c1a4e-0000-4000-8000-0000000000aa"})}}

    def per_call(fn) -> float:
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            best = min(best, (time.perf_counter() - t0) / n * 1e6)
        return round(best, 3)

    async def acquires() -> tuple[float, float]:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["BENCH_MICRO_KEY"] = "sk-bench"
            state = AccountState(Path(tmp) / "state.sqlite3")
            accounts = [KeyAccount({"name": f"k{i}", "base_url": "http://x/v1", "key_env": "BENCH_MICRO_KEY"}, state)
                        for i in range(3)]
            pool = AccountPool(accounts, state)
            conv = of({}, chat)
            out = []
            for kw in ({}, {"conversation": conv}):
                best = float("inf")
                for _ in range(5):
                    t0 = time.perf_counter()
                    for _ in range(n):
                        await pool.acquire(**kw)
                    best = min(best, (time.perf_counter() - t0) / n * 1e6)
                out.append(round(best, 3))
            state.close()
            return out[0], out[1]

    plain, affine = asyncio.run(acquires())
    return {"conversation of a Claude Code request (its session id)": per_call(lambda: of(claude, chat)),
            "conversation by the opening (7 KB system prompt, 40 messages)": per_call(lambda: of({}, chat)),
            "pool.acquire, no conversation": plain, "pool.acquire, a known conversation": affine}


def bench_affinity(conversations: int = 12, turns: int = 6, accounts: int = 3, rounds: int = 3) -> list[dict]:
    baseline = os.environ.get("QWEN_BENCH_BASELINE")
    runs: dict[str, list[dict]] = {}
    with Procs() as procs:
        emulator = procs.emulator()
        keys = [f"sk-bench-affinity-{i}" for i in range(accounts)]
        for k in keys:
            httpx.post(emulator + "/_emulator/tokens", json={"access_token": k, "kind": "key"},
                       trust_env=False).raise_for_status()
        targets = {"gateway (this tree)": ("gateway", None)}
        if baseline:
            targets[f"baseline {revision(Path(baseline))} (round-robin)"] = ("baseline", Path(baseline))
        urls = {label: procs.mitmdump(name, "https://portal.qwen.ai", addon=True, checkout=checkout,
                                      env=_accounts(procs, emulator, keys, name))
                for label, (name, checkout) in targets.items()}
        for label, (name, _) in targets.items():
            _run(procs, name, urls[label], emulator, keys, 2, 2)  # warm: connections, encodings
        for _ in range(rounds):  # alternating: the shared machine's load falls on both alike
            for label, (name, _) in targets.items():
                runs.setdefault(label, []).append(_run(procs, name, urls[label], emulator, keys, conversations, turns))
    head = {"scenario": f"affinity: {accounts} key accounts, {conversations} concurrent conversations of {turns} "
                        f"streamed turns, {rounds} rounds", "results": {k: _table(v) for k, v in runs.items()}}
    look = {"scenario": "affinity look-up, in process (µs per request, best of 5)",
            "results": {k: {"µs": v} for k, v in micro().items()}}
    return [head, look]
