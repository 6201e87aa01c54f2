"""A team's own vLLM server speaks Messages and Responses itself (`POST /v1/messages`, `/v1/responses`): is sending a
client's request there as it is ("native") better than the gateway's translation to chat? (scripts/bench.py
selfnative; issue 78 item 6.)

Emulated 2026 vLLM servers (`--serve vllm --vllm-version 0.20.0`, `qwen3_coder` tool calls): Qwen3.6-27B with its
template (a system message anywhere but first is a 400) and the qwen3 reasoning parser, at 262,144 and 40,960 tokens,
and Qwen3-Coder-30B-A3B (no thinking, a template that takes system text anywhere); each reached two ways in one run:
- translated: the gateway with one self-hosted account (the client's dialect → chat → the client's dialect);
- native: bare mitmdump in reverse mode in front of the server, the request passed as the client sent it (the least
  a native pass-through could cost: nothing of the gateway runs). The key goes as `Authorization: Bearer` (vLLM's
  `--api-key` check; Claude Code sends it so with `ANTHROPIC_AUTH_TOKEN`).
Three sessions each, driven over raw HTTP as the clients send them:
- Claude Code: the 14 recorded turns of scripts/data/claude_code_shapes.json (streamed, 14 tools, adaptive thinking,
  `max_tokens` 128,000 and a `role: "system"` message inside `messages`, as Claude Code sends them to a `*-5-5`
  model); the model named as the server serves it (a native client must be told the name);
- Codex: 10 streamed Responses turns, `store: false`, the whole conversation each turn, Codex's `instructions` plus a
  `developer` item, five function tools.
Per way: the answers' status, stop reasons, what the answers held (thinking, text, tool calls, usage), and the
proxy's CPU (user + system, /proc) per request. Nothing asserts: it measures.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx

from bench_native import FILE, INSTRUCTIONS, TOOLS
from benchlib import Procs
from recorded_shapes import turns as claude_turns

KEY = "sk-bench"
# (what the server is, its model, its flags): Qwen3.6 with its own template (the system-first rule) at its full window
# and at a Qwen3-8B-sized one, and a Qwen3-Coder server whose template takes system text anywhere (no thinking)
SERVERS = (("Qwen3.6-27B, its template, 262,144 tokens", "Qwen/Qwen3.6-27B",
            "--reasoning-parser qwen3 --chat-template qwen3.6 --max-model-len 262144".split()),
           ("Qwen3.6-27B, its template, 40,960 tokens", "Qwen/Qwen3.6-27B",
            "--reasoning-parser qwen3 --chat-template qwen3.6 --max-model-len 40960".split()),
           ("Qwen3-Coder-30B-A3B, a template without the rule, 262,144 tokens", "Qwen/Qwen3-Coder-30B-A3B-Instruct",
            "--max-model-len 262144".split()))
DEVELOPER = "<permissions instructions>Filesystem sandboxing: workspace-write. Approval policy: on-request." \
            "</permissions instructions>"


def _cpu(pid: int) -> float:
    """The process's CPU seconds so far (user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _events(resp: httpx.Response) -> list[tuple[str, dict]]:
    out, name = [], ""
    for line in resp.iter_lines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:") and line[5:].strip() not in ("", "[DONE]"):
            data = json.loads(line[5:])
            out.append((data.get("type") or name, data))
    return out


def _messages_turn(client: httpx.Client, url: str, body: dict, tally: dict) -> None:
    with client.stream("POST", url + "/v1/messages", json=body,
                       headers={"authorization": f"Bearer {KEY}", "anthropic-version": "2023-06-01"}) as resp:
        if resp.status_code != 200:
            resp.read()
            tally["refused"].append(f"{resp.status_code} {resp.text[:160]}")
            return
        events = _events(resp)
    tally["answered"] += 1
    for kind, data in events:
        if kind == "content_block_start":
            block = data["content_block"]["type"]
            tally["blocks"][block] = tally["blocks"].get(block, 0) + 1
        elif kind == "message_delta":
            stop = data.get("delta", {}).get("stop_reason")
            tally["stops"][stop] = tally["stops"].get(stop, 0) + 1
            tally["usage"] |= set(data.get("usage") or {})
        elif kind == "message_start":
            tally["usage"] |= set(data["message"].get("usage") or {})
        elif kind == "error":
            tally["refused"].append(f"stream error {data.get('error', {}).get('message', '')[:160]}")


def claude_code(url: str, model: str) -> dict:
    tally: dict = {"answered": 0, "refused": [], "blocks": {}, "stops": {}, "usage": set()}
    with httpx.Client(trust_env=False, timeout=120) as client:
        for turn in claude_turns():
            _messages_turn(client, url, {**turn["body"], "model": model}, tally)
    return tally


def _responses_turn(client: httpx.Client, url: str, body: dict, tally: dict) -> list[dict]:
    with client.stream("POST", url + "/v1/responses", json=body, headers={"Authorization": f"Bearer {KEY}"}) as resp:
        if resp.status_code != 200:
            resp.read()
            tally["refused"].append(f"{resp.status_code} {resp.text[:160]}")
            return []
        events = _events(resp)
    done = [d["response"] for kind, d in events if kind in ("response.completed", "response.incomplete",
                                                           "response.failed")]
    if not done:
        tally["refused"].append("stream without a terminal event")
        return []
    tally["answered"] += 1
    final = done[-1]
    tally["stops"][final["status"]] = tally["stops"].get(final["status"], 0) + 1
    tally["usage"] |= set(final.get("usage") or {})
    for item in final.get("output") or []:
        tally["blocks"][item["type"]] = tally["blocks"].get(item["type"], 0) + 1
    return [{"role": "assistant", "content": c["text"]} for o in final.get("output") or [] if o["type"] == "message"
            for c in o.get("content") or [] if c.get("type") == "output_text"]


def codex(url: str, model: str, turns: int = 10) -> dict:
    tally: dict = {"answered": 0, "refused": [], "blocks": {}, "stops": {}, "usage": set()}
    items: list[dict] = [{"type": "message", "role": "developer", "content": [{"type": "input_text",
                                                                              "text": DEVELOPER}]}]
    with httpx.Client(trust_env=False, timeout=120) as client:
        for t in range(turns):
            items.append({"type": "message", "role": "user", "content": [{"type": "input_text", "text":
                          f"step {t}: look at src/handler_{t}.py and fix what is wrong.\n\n{FILE}"}]})
            body = {"model": model, "instructions": INSTRUCTIONS, "input": items, "tools": TOOLS, "stream": True,
                    "store": False, "tool_choice": "auto", "parallel_tool_calls": False,
                    "reasoning": {"effort": "medium", "summary": "auto"}, "include": ["reasoning.encrypted_content"]}
            items += _responses_turn(client, url, body, tally)
    return tally


def _row(tally: dict, requests: int, cpu_s: float) -> dict:
    refused = sorted(set(tally["refused"]))
    return {"answered": f"{tally['answered']} of {requests}",
            "refused (distinct)": "; ".join(refused)[:300] or "none",
            "stops": json.dumps(tally["stops"]), "what the answers held": json.dumps(tally["blocks"]),
            "usage fields": ", ".join(sorted(tally["usage"])) or "none",
            "proxy CPU ms a request": round(cpu_s * 1000 / max(requests, 1), 1)}


def _gateway(procs: Procs, server: str, name: str) -> str:
    state = procs.tmp / f"state-{name}"
    state.mkdir()
    (state / "accounts.json").write_text(json.dumps({"accounts": [
        {"name": "gpu", "kind": "key", "provider": "selfhosted", "base_url": server + "/v1", "key_env": "GPU_KEY"}]}))
    return procs.mitmdump(name, "https://portal.qwen.ai", addon=True,
                          env={"QWEN_DIR": str(procs.tmp / f"qwen-{name}"), "QWEN_GATEWAY_HOME": str(state),
                               "GPU_KEY": KEY})


def bench_selfnative() -> list[dict]:
    results = []
    for what, model, flags in SERVERS:
        rows: dict[str, dict] = {}
        with Procs() as procs:
            server = procs.emulator("--serve", "vllm", "--vllm-version", "0.20.0", "--model", model,
                                    "--enable-auto-tool-choice", "--tool-call-parser", "qwen3_coder", *flags)
            targets = {"translated (gateway)": ("gateway", _gateway(procs, server, "gateway")),
                       "native (bare mitmdump → the server's own endpoint)":
                           ("bare", procs.mitmdump("bare", server, addon=False))}
            for session, run, count in (("Claude Code, 14 turns", claude_code, len(claude_turns())),
                                        ("Codex, 10 turns", codex, 10)):
                for label, (name, url) in targets.items():
                    httpx.post(server + "/_emulator/reset", json={}, trust_env=False).raise_for_status()
                    before = _cpu(procs.pids[name])
                    tally = run(url, model)
                    rows[f"{session}: {label}"] = _row(tally, count, _cpu(procs.pids[name]) - before)
        results.append({"scenario": f"selfnative: a 2026 vLLM (v0.20.0, qwen3_coder tool calls) serving {what}, "
                                    f"reached translated and native", "results": rows})
    return results
