"""A real Claude Code turn (the `claude` binary) whose stream Qwen throttles mid-answer (issue 63, item 4), or whose
stream a network cuts inside a `data:` line or inside a character (issue 67): the gateway goes on from the text
Claude Code already has (partial mode) — on the pool's other account when throttled, on the same one when cut;
Claude Code prints one complete answer after ONE model call — it did not send the turn again and pay its prompt
twice. Where a cut cannot be continued (a model without partial mode), it prints Qwen's break as its error.

A world of its own (tests/helpers/claude_ns.py): the throttled account cools down for seconds afterwards."""

from __future__ import annotations

import json
import re

import pytest

from e2e.test_e2e_claude_code import STREAM_JSON, base_url_env, finished
from helpers.claude_ns import claude_world, model_calls  # noqa: F401  (fixtures)
from helpers.home import Home, accounts_in
from helpers.procs import until

pytestmark = pytest.mark.e2e


def test_claude_code_turn_throttled_mid_answer_prints_one_answer(claude_world, tmp_path_factory):
    world = claude_world
    state = tmp_path_factory.mktemp("two-accounts")
    (first,) = accounts_in(world.state)
    Home(state, state=state).account(first, {**first, "name": "emu2"}).write()
    gw = world.recording_gateway("continued", "reverse:https://portal.qwen.ai", "--set", f"qwen_state_dir={state}")
    try:
        world.reset_emulator()
        world.fault("error_finish")
        r, took, _ = world.claude("say hello", *STREAM_JSON, env=base_url_env(gw))
        events, result = finished(r, gw)
        assert result["result"] == "Echo: say hello"
        assert len(model_calls(events)) == 1  # one model call, one answer: nothing sent again
        chats = world.chat_requests()
        assert len(chats) == 2
        assert chats[1]["body"]["messages"] == [*chats[0]["body"]["messages"],
                                                {"role": "assistant", "content": "Echo: ", "partial": True}]
        record = json.loads(until(lambda: sorted((state / "logs").glob("exchange-*.json")), "the debug log")[-1]
                            .read_text())
        summary = record["summary"]
        assert summary["status"] == 200 and summary["retry_reasons"] == ["continued"]
        assert summary["accounts_tried"] in (["emu", "emu2"], ["emu2", "emu"])
        assert any(re.match(r"stream continued on emu2? after 6 characters \(partial mode\): emu2? throttled", n)
                   for n in summary["notes"]), summary["notes"]
        print(f"\nClaude Code turn throttled mid-answer and continued: {took:.2f} s")
    finally:
        gw.stop()


@pytest.mark.parametrize("inside,how", [('"content":"say ', "rst"), ("é", "fin")])  # a data line; a character
def test_claude_code_turn_cut_mid_line_prints_one_answer(claude_world, inside, how):
    world = claude_world
    gw = world.recording_gateway(f"cut-{how}", "reverse:https://portal.qwen.ai")
    try:
        world.reset_emulator()
        world.fault("cut", inside=inside, how=how)
        prompt = "say héllo" if inside == "é" else "say hello"
        r, took, _ = world.claude(prompt, *STREAM_JSON, env=base_url_env(gw))
        events, result = finished(r, gw)
        assert result["result"] == f"Echo: {prompt}"
        assert len(model_calls(events)) == 1  # one model call, one answer: nothing sent again
        chats = world.chat_requests()
        assert len(chats) == 2 and chats[1]["body"]["messages"][-1]["partial"] is True
        assert f"Echo: {prompt}".startswith(chats[1]["body"]["messages"][-1]["content"])
        until(lambda: "cut=1" in gw.log() and "continued=1" in gw.log(), "the turn's request line")
        print(f"\nClaude Code turn cut mid-line ({how}) and continued: {took:.2f} s")
    finally:
        gw.stop()


def test_claude_code_turn_cut_where_it_cannot_go_on_is_never_taken_as_whole(claude_world):
    """qwen4-max has no partial mode: a cut after text went out ends the stream with Anthropic's `error` event, never
    a close that reads as a whole message — Claude Code takes it as the failed call it is and asks again itself
    (without a stream), so it prints the whole answer, not the text it had when the stream broke."""
    world = claude_world
    gw = world.recording_gateway("cut-error", "reverse:https://portal.qwen.ai", "--set",
                                 "qwen_model_map=claude-sonnet=qwen4-max", "--set",
                                 "qwen_model_map=claude-opus=qwen4-max", "--set", "qwen_model_map=claude-haiku=qwen4-max")
    try:
        world.reset_emulator()
        world.switches(reasoning=False)
        world.fault("cut", inside='"content":"say ', how="rst")
        r, _, _ = world.claude("say hello", *STREAM_JSON, env=base_url_env(gw))
        _, result = finished(r, gw)
        assert result["result"] == "Echo: say hello"  # not "Echo: ", what it had when the stream broke
        lines = until(lambda: (found := [ln for ln in gw.log().splitlines() if "POST /v1/messages" in ln])
                      and len(found) >= 2 and found, "the request lines")
        assert "cut=1 error=upstream_connection_error" in lines[0] and "continued=" not in lines[0], lines
        assert "cut=" not in lines[1] and len(world.chat_requests()) == 2, lines  # Claude Code's own second call
    finally:
        gw.stop()
