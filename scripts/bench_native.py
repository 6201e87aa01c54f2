"""Responses on Qwen's own Responses API against the translation (scripts/bench.py native): a Codex-like
session of 20 streamed turns, three ways with openai-python's `client.responses.create` (each turn continuing
the last by `previous_response_id`; Codex's `store: false` with the whole conversation every turn; stored, the
whole conversation resent), each with instructions of ≈ 8 KB, five function tools, each turn a user step with
≈ 1.5 KB of a file's text, and the emulator's answers; through two gateways in the same run, each with one
pay-as-you-go key account on the emulator (its caches cold for each): one translating every turn to chat (the
default), one with `qwen_responses_native`. Per gateway, from its own usage ledger (read from its file once it
has stopped): the prompt tokens billed, those read from Qwen's cache and those written to it, and what the
session cost at the built-in price list (pay-as-you-go international, qwen3-coder-plus) as the ledger prices
it; and the request bytes the emulator received.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from benchlib import Procs

MODEL = "qwen3-coder-plus"
INSTRUCTIONS = "You are Codex, a coding agent working in the user's repository. " + \
    "Read files before editing them, keep changes small, run the tests after each change. " * 90  # ≈ 8 KB
TOOLS = [{"type": "function", "name": name, "description": f"{name}: one of the agent's tools",
          "parameters": {"type": "object", "properties": {"arg": {"type": "string"}}}}
         for name in ("exec_command", "read_file", "apply_patch", "list_dir", "search")]
FILE = "def handler(event):\n    return process(event['body'])  # the code the agent reads\n" * 18  # ≈ 1.5 KB


def _gateway(procs: Procs, emulator: str, key: str, name: str, *args: str) -> tuple[str, Path]:
    state = procs.tmp / f"state-{name}"
    state.mkdir()
    (state / "accounts.json").write_text(json.dumps({"accounts": [
        {"name": "payg", "kind": "key", "base_url": emulator + "/compatible-mode/v1", "key_env": "BENCH_KEY",
         "default_model": MODEL}]}))
    env = {"QWEN_DIR": str(procs.tmp / f"qwen-{name}"), "QWEN_GATEWAY_HOME": str(state), "BENCH_KEY": key}
    return procs.mitmdump(name, "https://portal.qwen.ai", addon=True, env=env, args=args), state


def session(url: str, turns: int) -> None:
    """One conversation of `turns` streamed turns, each continuing the previous response."""
    import openai
    client = openai.OpenAI(base_url=url + "/v1", api_key="bench", max_retries=0, timeout=120,
                           http_client=httpx.Client(trust_env=False))
    previous = None
    for t in range(turns):
        step = f"step {t}: look at src/handler_{t}.py and fix what is wrong.\n\n{FILE}"
        extra = {"previous_response_id": previous} if previous else {}
        stream = client.responses.create(model=MODEL, instructions=INSTRUCTIONS, tools=TOOLS, input=step,
                                         stream=True, **extra)
        for event in stream:
            if event.type == "response.completed":
                previous = event.response.id
        assert previous is not None


def resent(url: str, turns: int) -> None:
    """A client that keeps the conversation itself (stored, the default), sending all of it every turn."""
    stateless(url, turns, store=True)


def stateless(url: str, turns: int, store: bool = False) -> None:
    """Codex's way: `store: false`, the whole conversation sent every turn (its items as the answers gave them)."""
    import openai
    client = openai.OpenAI(base_url=url + "/v1", api_key="bench", max_retries=0, timeout=120,
                           http_client=httpx.Client(trust_env=False))
    items: list = []
    for t in range(turns):
        items.append({"role": "user", "content": f"step {t}: look at src/handler_{t}.py and fix what is wrong.\n\n"
                                                 f"{FILE}"})
        stream = client.responses.create(model=MODEL, instructions=INSTRUCTIONS, tools=TOOLS, input=items,
                                         stream=True, store=store)
        for event in stream:
            if event.type == "response.completed":
                items += [{"role": "assistant", "content": o.content[0].text} for o in event.response.output
                          if o.type == "message"]


def ledger(state: Path) -> dict:
    """The session's figures from the gateway's usage ledger (read once the gateway has stopped: flushed), each
    request priced by the built-in list as the ledger prices it (pay-as-you-go international: the emulator's
    loopback base names no region)."""
    import sqlite3

    from qwen_gateway.pricing import prices

    table = prices.builtin()
    with sqlite3.connect(state / "usage.sqlite3") as db:
        rows = db.execute("SELECT upstream_model, prompt_tokens, completion_tokens, cached_tokens, "
                          "cache_write_tokens, cache_kind FROM usage WHERE endpoint='responses' "
                          "ORDER BY ts").fetchall()
    usd = 0.0
    for model, prompt, completion, cached, written, kind in rows:
        details = {"cached_tokens": cached or 0, "cache_creation_input_tokens": written or 0}
        if kind == "explicit":
            details["cache_type"] = "ephemeral"
        usage = {"prompt_tokens": prompt or 0, "completion_tokens": completion or 0, "prompt_tokens_details": details}
        usd += (table.cost("payg:intl", model, usage) or (0.0, ""))[0]
    prompt = sum(r[1] or 0 for r in rows)
    cached = sum(r[3] or 0 for r in rows)
    return {"turns": len(rows), "prompt tokens billed": prompt, "read from the cache": cached,
            "written to the cache": sum(r[4] or 0 for r in rows), "share read": f"{cached / prompt:.0%}",
            "cost, USD": round(usd, 5)}


def bench_native(turns: int = 20) -> list[dict]:
    results: dict[str, dict] = {}
    with Procs() as procs:
        emulator = procs.emulator()
        key = "sk-bench-native"
        httpx.post(emulator + "/_emulator/tokens", json={"access_token": key, "kind": "key"},
                   trust_env=False).raise_for_status()
        targets = {"translated to chat (default)": ("translated", ()),
                   "Qwen's own Responses API + session cache": ("native", ("--set", "qwen_responses_native=true"))}
        states, sent = {}, {}
        for way, run in (("previous_response_id", session), ("store false, whole history (Codex)", stateless),
                         ("stored, whole history resent", resent)):
            for label, (name, args) in targets.items():
                label = f"{way}: {label}"
                url, states[label] = _gateway(procs, emulator, key, f"{name}-{run.__name__}", *args)
                httpx.post(emulator + "/_emulator/reset", json={}, trust_env=False).raise_for_status()  # cold
                httpx.post(emulator + "/_emulator/tokens", json={"access_token": key, "kind": "key"},
                           trust_env=False).raise_for_status()
                run(url, turns)
                sent[label] = sum(r["raw_body_len"] for r in httpx.get(emulator + "/_emulator/requests",
                                                                        trust_env=False).json())
    results = {label: {**ledger(state), "bytes sent to Qwen": sent[label]}  # the gateways stopped: flushed
               for label, state in states.items()}
    return [{"scenario": f"native: a Codex-like Responses session of {turns} streamed turns, {MODEL}, "
                         f"pay-as-you-go international prices", "results": results}]
