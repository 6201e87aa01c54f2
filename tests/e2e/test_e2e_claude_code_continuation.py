"""A real Claude Code turn (the `claude` binary) whose stream Qwen throttles mid-answer (issue 63, item 4): the
gateway goes on on the pool's other account from the text Claude Code already has (partial mode); Claude Code
prints one complete answer after ONE model call — it did not send the turn again and pay its prompt twice.

A world of its own (tests/helpers/claude_ns.py): the throttled account cools down for seconds afterwards."""

from __future__ import annotations

import json
import re

import pytest

from e2e.test_e2e_claude_code import STREAM_JSON, base_url_env, finished
from helpers.claude_ns import claude_world, model_calls  # noqa: F401  (fixtures)
from helpers.procs import until

pytestmark = pytest.mark.e2e


def test_claude_code_turn_throttled_mid_answer_prints_one_answer(claude_world, tmp_path_factory):
    world = claude_world
    state = tmp_path_factory.mktemp("two-accounts")
    (first,) = json.loads((world.state / "accounts.json").read_text())["accounts"]
    (state / "accounts.json").write_text(json.dumps({"accounts": [first, {**first, "name": "emu2"}]}))
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
