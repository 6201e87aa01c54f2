"""Every cache miss named for what it is (issue 81, item 2), through a real mitmdump (writing a flow file and its
ledger) to the emulator, whose explicit cache looks back 20 content blocks from each marker as Model Studio's
does, driven by the real `anthropic` SDK:

- a new message of 25 blocks puts the client's marker past Qwen's 20-block lookback from the prefix the turn before
  stored: where the gateway has room for a marker of its own it keeps that prefix within reach (nothing lost);
  where the client spent all four markers, the loss is named `lookback` on the flow, in the client's
  `diagnostics`, in `qwen-usage conversations` and in `/metrics` — not "Qwen dropped it";
- a client that stops sending `cache_control` where the gateway places markers itself loses nothing, and is told
  no miss;
- the client's `diagnostics` gives the doctor's own figure of the tokens lost."""

from __future__ import annotations

import json
import os

import httpx
import pytest
from mitmproxy import io

from helpers import commands
from helpers.procs import until
from helpers.team import ANTHROPIC_PYTHON, NO_ANTHROPIC, QWEN_USAGE, add_key, anthropic_calls, team_env

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not ANTHROPIC_PYTHON.exists(), reason=NO_ANTHROPIC)]

EPHEMERAL = {"type": "ephemeral"}
MODEL = "claude-sonnet-4-6"
BIG = "Read every file of the repository before you answer a question about it. " * 70  # ~1,300 tokens
TOOLS = [{"name": f"Tool{i}", "description": f"Tool {i} does its one thing carefully. " * 12,
          "input_schema": {"type": "object", "properties": {"arg": {"type": "string"}}}} for i in range(12)]


def text(value: str, marked: bool = False) -> dict:
    return {"type": "text", "text": value, **({"cache_control": EPHEMERAL} if marked else {})}


def system(tag: str, marked: bool = True) -> list[dict]:
    """Claude Code's shape (docs/claude-code.md): a short line, then the long prompt, marked."""
    return [text(f"You are a coding agent [{tag}]."), text(BIG, marked)]


def conversation(tag: str, turns: int, *, blocks: int = 1, marks: str = "claude") -> dict:
    """`turns` user turns; the last one of `blocks` text blocks. `marks`: "claude" (the system prompt and the last
    block, as Claude Code), "all4" (the system's two blocks, the first message and the last block: no room left
    for the gateway's), "none" (no `cache_control` at all)."""
    messages: list[dict] = []
    for i in range(turns):
        last = i == turns - 1
        if last and blocks > 1:
            content = [text(f"Part {k} of the new notes: " + "a detail worth keeping. " * 40) for k in range(blocks)]
        else:
            content = [text(f"Turn {i} [{tag}]: " + "Look at this file and fix the bug in it. " * 150)]
        messages += [{"role": "user", "content": content}, {"role": "assistant", "content": f"Done with turn {i}."}]
    messages.pop()
    if marks != "none":
        last = messages[-1]["content"]
        last[-1] = {**last[-1], "cache_control": EPHEMERAL}
    if marks == "all4":
        first = messages[0]["content"]
        first[-1] = {**first[-1], "cache_control": EPHEMERAL}
    sys_blocks = system(tag, marked=marks != "none")
    if marks == "all4":
        sys_blocks[0] = {**sys_blocks[0], "cache_control": EPHEMERAL}
    return {"model": MODEL, "max_tokens": 32, "system": sys_blocks, "tools": TOOLS, "messages": messages}


@pytest.fixture
def recorded_gw(tmp_path, emu, make_gateway):
    env = team_env(tmp_path, emu)
    key = add_key(env, "alice")
    flows = tmp_path / "flows.mitm"
    gw = make_gateway(env=env, args=("-w", str(flows)))
    return gw, key, env, flows


def stopped_flows(gw, path) -> list:
    gw.stop()
    with open(path, "rb") as f:
        return [fl for fl in io.FlowReader(f).stream() if "/v1/messages" in fl.request.path]


def conversations(env: dict) -> list[dict]:
    r = commands.run([QWEN_USAGE, "conversations", "--json", "--state-dir", env["QWEN_GATEWAY_HOME"]],
                       timeout=60, env={**os.environ, **env})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def said(outcome: dict, op: str) -> dict | None:
    answer = outcome["answer"]
    if op == "stream":
        return answer["delta_diagnostics"] or answer["message"].get("diagnostics")
    return answer.get("diagnostics")


def usage(outcome: dict) -> dict:
    answer = outcome["answer"]
    return (answer["message"] if "message" in answer else answer)["usage"]


def three_turns(gw, key, tag: str, op: str, **last) -> list[dict]:
    calls = [{"op": op, "params": conversation(tag, 1, marks=last.get("marks", "claude")), "diagnose": True,
              "previous": None},
             {"op": op, "params": conversation(tag, 2, marks=last.get("marks", "claude")), "diagnose": True},
             {"op": op, "params": conversation(tag, 3, **last), "diagnose": True}]
    return anthropic_calls(gw.url, key, calls)


@pytest.mark.parametrize("op", ["create", "stream"])
def test_a_25_block_message_keeps_the_prefix_within_qwens_lookback(recorded_gw, op):
    """Claude Code's markers leave room: the gateway's own keeps the turn before's prefix within 20 blocks."""
    gw, key, env, path = recorded_gw
    out = three_turns(gw, key, f"reach-{op}", op, blocks=25)
    second, third = usage(out[1]), usage(out[2])
    stored = second["cache_read_input_tokens"] + second["cache_creation_input_tokens"]
    assert third["cache_read_input_tokens"] >= stored, (second, third)  # the second turn's whole prompt read
    assert said(out[2], op) is None  # nothing missed, nothing to say
    flows = stopped_flows(gw, path)
    caches = [f.metadata["qwen"]["cache"] for f in flows]
    assert [c["turn"] for c in caches] == [1, 2, 3] and caches[2]["cause"] is None, caches[2]


@pytest.mark.parametrize("op", ["create", "stream"])
def test_a_25_block_message_past_the_lookback_is_named_so_everywhere(recorded_gw, op):
    """All four markers the client's, none within 20 blocks of the turn before's prefix: Qwen reads only the
    first message's prefix; the loss is the lookback's, on every surface."""
    gw, key, env, path = recorded_gw
    out = three_turns(gw, key, f"past-{op}", op, blocks=25, marks="all4")
    second, third = usage(out[1]), usage(out[2])
    stored = second["cache_read_input_tokens"] + second["cache_creation_input_tokens"]
    assert third["cache_read_input_tokens"] < stored - 1000, (second, third)  # Qwen lost the second turn's
    diagnostics = said(out[2], op)
    assert diagnostics["cache_miss_reason"] == {"type": "unavailable"}, diagnostics
    assert diagnostics["qwen_cache_miss"]["type"] == "lookback", diagnostics
    lost = diagnostics["qwen_cache_miss"]["cache_missed_input_tokens"]
    metrics = httpx.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {key}"}, trust_env=False).text
    assert any(ln.startswith("qwen_cache_misses_total{") and 'cause="lookback"' in ln for ln in metrics.splitlines())
    (row,) = until(lambda: [c for c in conversations(env) if c["turns"] == 3], "the three turns in the ledger",
                   limit=30)
    assert row["causes"] == "lookback (turn 3)" and row["lost_tokens"] == lost, row
    flows = stopped_flows(gw, path)
    cache = flows[2].metadata["qwen"]["cache"]
    assert cache["cause"] == "lookback" and cache["lost"] == lost, cache
    assert "20 blocks" in flows[2].comment, flows[2].comment


@pytest.mark.parametrize("op", ["create", "stream"])
def test_a_client_that_drops_its_markers_where_the_gateway_places_them_misses_nothing(recorded_gw, op):
    gw, key, env, path = recorded_gw
    calls = [{"op": op, "params": conversation(f"strip-{op}", 1), "diagnose": True, "previous": None},
             {"op": op, "params": conversation(f"strip-{op}", 2, marks="none"), "diagnose": True}]
    out = anthropic_calls(gw.url, key, calls)
    first, second = usage(out[0]), usage(out[1])
    assert second["cache_read_input_tokens"] >= first["cache_creation_input_tokens"] - 32, (first, second)
    assert said(out[1], op) is None, said(out[1], op)
    caches = [f.metadata["qwen"]["cache"] for f in stopped_flows(gw, path)]
    assert caches[1]["cause"] is None, caches[1]


@pytest.mark.parametrize("op", ["create", "stream"])
def test_the_clients_figure_of_a_tool_change_is_the_doctors(recorded_gw, op):
    gw, key, env, path = recorded_gw
    changed = conversation(f"tool-{op}", 3)
    changed["tools"] = [*TOOLS[:5], {**TOOLS[5], "input_schema": {"type": "object", "properties": {
        "arg": {"type": "string"}, "mode": {"type": "string", "enum": ["fast", "careful"]}}}}, *TOOLS[6:]]
    calls = [{"op": op, "params": conversation(f"tool-{op}", 2), "diagnose": True, "previous": None},
             {"op": op, "params": conversation(f"tool-{op}", 3), "diagnose": True},
             {"op": op, "params": changed, "diagnose": True, "against": 1}]
    out = anthropic_calls(gw.url, key, calls)
    diagnostics = said(out[2], op)
    assert diagnostics["cache_miss_reason"]["type"] == "tools_changed", diagnostics
    cache = [f.metadata["qwen"]["cache"] for f in stopped_flows(gw, path)][2]
    assert cache["cause"] == "tool" and cache["lost"] > 1000, cache
    assert diagnostics["cache_miss_reason"]["cache_missed_input_tokens"] == cache["lost"], (diagnostics, cache)
