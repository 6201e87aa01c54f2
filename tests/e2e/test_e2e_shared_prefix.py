"""New sessions of one agent read what the last one cached (issue 61 item 4), through a real gateway (mitmdump)
with three key accounts on the emulator, driven by the real anthropic SDK with Claude Code's request shape
(../shared/docs/claude-code.md: ~31 KB of tools, system blocks 1 and 2 marked, the opening reminder, the last
block marked, its session in metadata.user_id). Qwen's cache is per account, and it renders the tools after the
system prompt's text: a new session pays the tools again unless it goes to the account that wrote them and a
marker ends a prefix that holds them. Six sessions, one after another, two turns each."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from e2e.test_e2e_affinity import ANTHROPIC_PYTHON, three_keys

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(
    not ANTHROPIC_PYTHON.exists(), reason="anthropic SDK not installed (scripts/install-test-tools.sh installs it "
                                          "into .tools/anthropic-venv)")]

SESSIONS = """
import json, sys, anthropic
c = anthropic.Anthropic(max_retries=0)
tools = [{"name": f"Tool{i}", "description": ("Runs one step of the agent's work. " * 40)[:1400],
          "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}} for i in range(20)]
system = [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.328.b7f; cc_entrypoint=sdk-cli;"},
          {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.",
           "cache_control": {"type": "ephemeral"}},
          {"type": "text", "text": "# Harness\\n" + "Work carefully in the repository. " * 40,
           "cache_control": {"type": "ephemeral"}}]
reminder = {"type": "text", "text": "<system-reminder>" + "Attribute commits as the user asks. " * 16
            + "</system-reminder>"}
out = []
for n in range(int(sys.argv[1])):
    user_id = json.dumps({"device_id": "d" * 64, "account_uuid": "", "session_id": f"session-{n}"})
    messages = [{"role": "user", "content": [reminder, {"type": "text", "text": f"task {n}: fix file {n}",
                                                         "cache_control": {"type": "ephemeral"}}]}]
    for turn in range(2):
        m = c.messages.create(model="claude-sonnet-4-6", max_tokens=64, system=system, tools=tools,
                              messages=messages, metadata={"user_id": user_id})
        u = m.usage
        out.append({"session": n, "turn": turn, "input": u.input_tokens, "read": u.cache_read_input_tokens or 0,
                    "written": u.cache_creation_input_tokens or 0})
        messages.append({"role": "assistant", "content": m.content[0].text})
        messages.append({"role": "user", "content": [{"type": "text", "text": f"and now file {n}.{turn}",
                                                      "cache_control": {"type": "ephemeral"}}]})
print(json.dumps(out))
"""


def run_sessions(gw, count: int) -> list[dict]:
    sdk_env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_") and "proxy" not in k.lower()}
    r = subprocess.run([str(ANTHROPIC_PYTHON), "-c", SESSIONS, str(count)],
                       env={**sdk_env, "ANTHROPIC_BASE_URL": gw.url, "ANTHROPIC_API_KEY": "sk-ant-client"},
                       capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr[-3000:] + gw.log()[-2000:]
    return json.loads(r.stdout)


def test_new_sessions_of_one_agent_read_the_tools_the_first_one_cached(make_gateway, emu, tmp_path):
    env, keys = three_keys(tmp_path, emu)
    gw = make_gateway("prefix", env=env)
    turns = run_sessions(gw, 6)
    firsts = [t for t in turns if t["turn"] == 0]
    prompt = firsts[0]["input"] + firsts[0]["read"] + firsts[0]["written"]
    written = sum(t["written"] for t in turns)
    read = sum(t["read"] for t in turns)
    plain = sum(t["input"] for t in turns)
    # at Model Studio's "typical" cache prices (context-cache page): a write 125 %, an explicit read 10 %
    print(f"\nsix new sessions, 12 turns: {plain + read + written} prompt tokens, {read} read from Qwen's cache, "
          f"{written} written, {plain} plain; as input-price tokens: {plain + 1.25 * written + 0.1 * read:,.0f}")
    # sessions 2-6 open by reading the tools, the system prompt and the reminder the first one wrote
    assert all(t["read"] >= 0.9 * prompt for t in firsts[1:]), turns
    accounts = [keys[r["headers"]["authorization"].removeprefix("Bearer ")] for r in emu.chat_requests()]
    assert len(accounts) == 12 and len(set(accounts)) == 1, accounts  # where the prefix is: one account
    # what a session writes is its own part only: the task and the turns after it
    assert all(t["written"] < 0.1 * prompt for t in turns[2:]), turns
