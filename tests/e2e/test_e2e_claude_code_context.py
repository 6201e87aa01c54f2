"""Claude Code 2.1.328 (the real `claude` binary) working into a full context (issue 37, item 4): a session of
`claude -p … --continue` turns, each running Bash (`seq 1 1500`, about 3,500 tokens of output that the model's
answer repeats), until the conversation no longer fits a small limit — the gateway's own guard
(`qwen_context_limit_default`) in one test, Qwen's own refusal (the emulator's `context_limit`, DashScope's
`Range of input length should be [1, M]`) in the other.

What Claude Code does with the 400: on `prompt is too long: N tokens > M maximum` it compacts the conversation
(a summary request of its own, the oldest turns dropped by the gap N − M), sends the turn again and goes on; the
turn ends with the answer. With OpenAI's words (what the gateway said before) it also compacted, but blind: no
numbers, so its first summary requests were refused again (the guard's run: 15,374 tokens, then 13,147 twice)
before one fitted.

A world of its own (tests/helpers/claude_ns.py): the emulator's limit would refuse a shared world's later turns.
"""

from __future__ import annotations

import re

import pytest

from helpers.claude_ns import claude_world, flows, stream_json  # noqa: F401  (fixtures)
from e2e.test_e2e_claude_code import STREAM_JSON, base_url_env

pytestmark = pytest.mark.e2e

COMMAND = "seq 1 1500"
TURNS = 4  # the conversation passes the limits below in the third turn
GUARD_LIMIT = 12_000  # the gateway's tokens (tiktoken, the whole request): a turn adds about 3,500
QWEN_LIMIT = 9_000  # the emulator's (characters / 4 of the messages only)
TOO_LONG = re.compile(r"prompt is too long: (\d+) tokens > (\d+) maximum")


def fresh(world, gw) -> dict:
    """The emulator reset (the tool call the prompt asks for); where the world's exchange log and the gateway's
    flow log stand."""
    world.reset_emulator()
    world.switches(tool_arguments={"command": COMMAND})
    logs = world.state / "logs"
    return {"logs": {p.name for p in logs.glob("exchange-*.json")} if logs.exists() else set(),
            "flows": len(flows(gw))}


def run_turns(world, gw) -> list[list[dict]]:
    """TURNS turns of one session (each sends the whole conversation); each must run Bash and end as a success.
    The stream-json events of each turn."""
    work, turns = None, []
    for turn in range(TURNS):
        r, _, work = world.claude(f"use Bash to run {COMMAND}", *(["--continue"] if work else []), "--tools", "Bash",
                                  "--allowedTools", "Bash", *STREAM_JSON, env=base_url_env(gw), timeout=240,
                                  again=work)
        events = stream_json(r)
        result = events[-1] if events else {}
        assert r.returncode == 0 and result.get("subtype") == "success" and result.get("is_error") is False, (
            f"turn {turn}: exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-2000:]}\n{gw.log()[-2000:]}")
        ran = [b for e in events if e.get("type") == "user" for b in e["message"]["content"]
               if isinstance(b, dict) and b.get("type") == "tool_result" and b.get("is_error") is False]
        assert ran, f"turn {turn}: Bash never ran"  # (after a compaction the emulator may answer in words)
        turns.append(events)
    return turns


def compactions(turns: list[list[dict]]) -> list[dict]:
    """Claude Code's own account of each compaction it made (its stream-json `compact_boundary` events)."""
    return [e["compact_metadata"] for events in turns for e in events
            if e.get("type") == "system" and e.get("subtype") == "compact_boundary"]


def answered(world, gw, mark: dict) -> list[tuple[int, int | None, str]]:
    """Every /v1/messages exchange since `mark`: (status, the gateway's count of the prompt, error text). The
    debug log writes each record from a thread after the exchange ended, so the last turn's may still be on its
    way when Claude Code exits: wait for as many as the flow log (written on the loop) counts."""
    ended = sum("/v1/messages" in f["path"] for f in flows(gw)[mark["flows"]:])
    out = []
    for e in world.exchanges(mark, ended):
        body = (e.get("client_response") or {}).get("body") or {}
        error = (body.get("json") or {}).get("error") or {}
        out.append((e["client_response"]["status"], e["summary"].get("prompt_tokens_est"), error.get("message", "")))
    return out


def assert_compacted_by_the_gap(world, gw, mark: dict, turns, limit: int, *, guard: bool) -> None:
    made = compactions(turns)
    print(f"\n{len(made)} compactions: " + "; ".join(f"{m['pre_tokens']} -> {m['post_tokens']}" for m in made))
    assert made, "Claude Code never compacted"
    exchanges = answered(world, gw, mark)
    print("answers:", [(s, n) for s, n, _ in exchanges])
    refused = [(i, n, text) for i, (s, n, text) in enumerate(exchanges) if s == 400]
    assert refused and all(s in (200, 400) for s, _, _ in exchanges), exchanges
    for i, counted, text in refused:  # the client's words, with real numbers
        found = TOO_LONG.fullmatch(text)
        assert found, text
        tokens, maximum = int(found.group(1)), int(found.group(2))
        assert maximum == limit and tokens > limit
        if guard:
            assert tokens == counted  # the count the guard refused on
        assert i + 1 < len(exchanges) and exchanges[i + 1][0] == 200, exchanges  # cut by the gap: the next fitted


def test_claude_code_compacts_and_goes_on_at_the_gateways_limit(claude_world):
    world = claude_world
    gw = world.recording_gateway("guarded", "reverse:https://portal.qwen.ai", "--set",
                                 f"qwen_context_limit_default={GUARD_LIMIT}")
    try:
        mark = fresh(world, gw)
        turns = run_turns(world, gw)
        assert_compacted_by_the_gap(world, gw, mark, turns, GUARD_LIMIT, guard=True)
        sent = [n for s, n, _ in answered(world, gw, mark) if s == 200]
        assert max(sent) <= GUARD_LIMIT  # nothing over the limit reached Qwen
    finally:
        gw.stop()


def test_claude_code_compacts_and_goes_on_at_qwens_limit(claude_world):
    world = claude_world
    gw = world.recording_gateway("unguarded", "reverse:https://portal.qwen.ai")
    try:
        mark = fresh(world, gw)
        world.switches(context_limit=QWEN_LIMIT)
        turns = run_turns(world, gw)
        assert_compacted_by_the_gap(world, gw, mark, turns, QWEN_LIMIT, guard=False)
    finally:
        gw.stop()
