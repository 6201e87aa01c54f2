"""Real Claude Code, unchanged, asks api.anthropic.com for cache diagnostics (`diagnostics.previous_message_id`,
beta cache-diagnosis-2026-04-07; ../shared/docs/claude-code.md) — through the explicit proxy the gateway answers
it (issue 61 item 1): three turns of one session (`--continue`), the third with its system prompt changed; each
answer's `message_start` carries `diagnostics` in Anthropic's shape, and Claude Code takes every answer."""

from __future__ import annotations

import json

import pytest

from helpers.claude_ns import claude_world, proxy_gw, reverse_gw  # noqa: F401  (fixtures)
from e2e.test_e2e_claude_code import STREAM_JSON, finished, proxy_env

pytestmark = pytest.mark.e2e
LIVE = ("--system-prompt-snapshot", "off", *STREAM_JSON)


def sse_events(body: object) -> list[dict]:
    text = body.get("text", "") if isinstance(body, dict) else str(body or "")
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


def diagnostics_of(exchanges: list[dict]) -> tuple[list, list[dict], list]:
    """Of each recorded exchange: the `diagnostics` Claude Code asked, the message its answer started, and the
    `diagnostics` that start carried ("absent" when it carried none)."""
    asked = [e["client_request"]["body"]["json"].get("diagnostics") for e in exchanges]
    starts = [next(ev["message"] for ev in sse_events(e["client_response"].get("body"))
                   if ev.get("type") == "message_start") for e in exchanges]
    return asked, starts, [m.get("diagnostics", "absent") for m in starts]


def test_unchanged_claude_code_gets_its_cache_diagnostics(claude_world, proxy_gw):
    world = claude_world
    world.reset_emulator()
    mark = world.mark_all(proxy_gw)
    work = None
    for prompt, *own in (("say hello",), ("say hello again",),
                         ("and once more", "--append-system-prompt", "The user prefers answers in French.")):
        r, _, folder = world.claude(prompt, *(("--continue",) if work else ()), *own, *LIVE, env=proxy_env(proxy_gw),
                                    again=work)
        finished(r, proxy_gw)
        work = work or folder
    asked, starts, answered = diagnostics_of(world.exchanges(mark, 3))
    print(f"\nClaude Code asked: {asked}\nthe gateway answered: {answered}")
    assert asked[0] == {"previous_message_id": None}
    # each later turn names the message before it: the ids the gateway gave it
    assert [a["previous_message_id"] for a in asked[1:]] == [m["id"] for m in starts[:2]], (asked, starts)
    # null on the first turn and on a turn that changed nothing (Anthropic's shape); the system prompt's change named
    assert answered[:2] == [None, None], answered
    miss = answered[2]["cache_miss_reason"]
    assert miss["type"] == "system_changed" and miss["cache_missed_input_tokens"] > 0, answered
