"""Claude Code 2.1.328 (the real `claude` binary) and Qwen's explicit cache (issue 39, items 1 and 2): the cache
breakpoints it puts on its system blocks and on the last block of its last message (the prompt, or a
tool_result) reach Qwen where it put them, within Qwen's four, and what Qwen created and read comes back in
the usage Claude Code reports (`cache_creation_input_tokens`, `cache_read_input_tokens` of its result event).

A `claude -p` turn, then a `--continue` turn that runs Bash (a tool_result marked by Claude Code), through the
gateway's base URL inside the loopback-only namespace of tests/helpers/claude_ns.py; the emulator's cache
follows Model Studio's (docs/emulator.md)."""

from __future__ import annotations

import pytest

from helpers.claude_ns import claude_world, model_calls, reverse_gw, stream_json  # noqa: F401  (fixtures)
from e2e.test_e2e_claude_code import STREAM_JSON, base_url_env, finished, model_requests

pytestmark = pytest.mark.e2e

EPHEMERAL = {"type": "ephemeral"}


def marked_parts(body: dict) -> list[tuple[int, str, str]]:
    """(message index, role, text) of every marked content part of Qwen's body; at most four, all ephemeral,
    none on a message or a tool."""
    out = []
    assert not any("cache_control" in t for t in body.get("tools") or [])
    for j, m in enumerate(body["messages"]):
        assert "cache_control" not in m
        for p in m["content"] if isinstance(m["content"], list) else []:
            if "cache_control" in p:
                assert p["cache_control"] == EPHEMERAL, p
                out.append((j, m["role"], p.get("text", "")))
    assert len(out) <= 4, out
    return out


def client_marked(body: dict) -> list[str]:
    """The texts of the blocks Claude Code marked in `system` and in `role: "system"` messages."""
    blocks = [b for b in body["system"] if isinstance(b, dict)] + [
        b for m in body["messages"] if m["role"] == "system" and isinstance(m["content"], list) for b in m["content"]]
    return [b["text"] for b in blocks if "cache_control" in b]


def test_claude_codes_breakpoints_reach_qwen_and_its_cache_comes_back(claude_world, reverse_gw):
    world = claude_world
    world.reset_emulator()
    world.switches(tool_arguments={"command": "echo hi"})
    mark = world.mark_all(reverse_gw)
    r, _, work = world.claude("say hello", *STREAM_JSON, env=base_url_env(reverse_gw))
    events, first = finished(r, reverse_gw)
    (sent,) = model_requests(world, mark, model_calls(events))
    (qwen,) = [q["body"] for q in world.chat_requests()]
    marks = marked_parts(qwen)
    wanted = client_marked(sent)
    assert len(wanted) >= 2  # its system blocks (issue 39: every one of them was dropped)
    system_marks = [text.removeprefix("\n\n") for _, role, text in marks if role == "system"]
    assert system_marks == wanted, (system_marks, wanted)
    assert marks[-1][0] == len(qwen["messages"]) - 1  # and the whole prompt, for the next turn
    assert first["usage"]["cache_creation_input_tokens"] > 1024 and first["usage"]["cache_read_input_tokens"] == 0

    mark = world.mark_all(reverse_gw)
    r, _, _ = world.claude("use Bash to run echo hi", "--continue", "--tools", "Bash", "--allowedTools", "Bash",
                           *STREAM_JSON, env=base_url_env(reverse_gw), again=work)
    events, second = finished(r, reverse_gw)
    assert second["result"] == "Tool said: hi"
    asked, answered = model_requests(world, mark, model_calls(events))
    last = answered["messages"][-1]["content"][-1]
    assert last["type"] == "tool_result" and last["cache_control"] == EPHEMERAL  # Claude Code's breakpoint
    results = world.chat_requests()[-1]["body"]
    tool_marks = [(role, text) for j, role, text in marked_parts(results) if role == "tool"]
    assert tool_marks == [("tool", "hi")]  # reached Qwen on the tool message
    assert second["usage"]["cache_read_input_tokens"] >= first["usage"]["cache_creation_input_tokens"]
