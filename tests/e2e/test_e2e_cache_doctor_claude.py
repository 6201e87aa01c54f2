"""The cache doctor (issue 53, item 1) on a real Claude Code session whose system prompt changes mid-way: three
`claude -p` turns of one session (`--continue`), the third with `--append-system-prompt`, through a real mitmdump
writing a flow file (`-w`) and its ledger, against the emulator (whose prompt cache follows Model Studio's). The
third turn's flow says, in its comment and in the "Qwen cache doctor" view, that it missed because the system
text changed, where, and which hashes; `qwen-usage conversations` names the turn and the cause."""

from __future__ import annotations

import json
import os

import pytest
from mitmproxy import contentviews, io
from mitmproxy.test import taddons

from helpers import commands
from helpers.claude_ns import claude_world, stream_json  # noqa: F401  (fixtures)
from helpers.procs import until
from helpers.team import QWEN_USAGE
from e2e.test_e2e_claude_code import STREAM_JSON, session
from qwen_gateway.mitmweb.contentviews import register

pytestmark = pytest.mark.e2e
# Claude Code records a conversation's system prompt on its first request and resends that record (its
# --system-prompt-snapshot, on by default): off, a later launch's --append-system-prompt reaches the model
LIVE = ("--system-prompt-snapshot", "off", *STREAM_JSON)


def usage_conversations(world) -> list[dict]:
    usage = commands.run([QWEN_USAGE, "conversations", "--json", "--state-dir", str(world.state)],
                           timeout=60, env=dict(os.environ))
    assert usage.returncode == 0, usage.stderr
    return json.loads(usage.stdout)


def recorded(path) -> list:
    with open(path, "rb") as f:
        return [fl for fl in io.FlowReader(f).stream() if "/v1/messages" in fl.request.path]


def test_a_system_prompt_changed_mid_session_is_the_miss_and_its_cause(claude_world):
    world = claude_world
    world.reset_emulator()
    flowfile = world.workdir / "doctor.mitm"
    gw = world.recording_gateway("doctor", "reverse:https://portal.qwen.ai", "-w", str(flowfile))
    try:
        session(world, gw, ("say hello",), ("say hello again",),
                ("and once more", "--append-system-prompt", "The user prefers answers in French."), flags=LIVE)
        # the three rows are in the ledger while the gateway runs (written off the request path, in batches): a
        # stop that outlasted its grace on a loaded machine must not decide what this test sees
        until(lambda: [c for c in usage_conversations(world) if c["turns"] == 3], "the three turns in the ledger",
              limit=30)
    finally:
        assert gw.stop() == 0, "the gateway did not stop by itself on SIGTERM (killed)"
    flows = recorded(flowfile)
    caches = [f.metadata["qwen"].get("cache") for f in flows]
    assert all(caches) and len({c["conversation"] for c in caches}) == 1, caches  # one session, one conversation
    assert [c["turn"] for c in caches] == [1, 2, 3]
    first, second, third = flows
    assert caches[1]["cause"] is None and caches[1]["read"] > 1024  # the second turn read the first's prefix
    assert caches[2]["cause"] == "system" and caches[2]["read"] < caches[1]["read"], caches[2]
    assert caches[2]["diff"]["where"].startswith("messages[0]")
    assert "cache: turn 3 read" in third.comment and "the system text changed" in third.comment, third.comment
    assert "cache: turn 2 read" in second.comment and "lost" not in second.comment
    register()
    with taddons.context():
        shown = contentviews.prettify_message(third.response, third, "Qwen cache doctor").text
    assert shown.splitlines()[0] == caches[2]["verdict"]
    assert "prefix vs turn 2: first change at block" in shown and "French" not in shown
    print("\n" + third.comment.split(" ┃ ")[1] + "\n" + shown)

    (row,) = [c for c in usage_conversations(world) if caches[0]["conversation"].startswith(c["conversation"])]
    assert row["turns"] == 3 and row["missed_turns"] == 1 and row["causes"] == "system (turn 3)", row
    assert row["lost_tokens"] > 0
    print(commands.run([QWEN_USAGE, "conversations", "--state-dir", str(world.state)], timeout=60).stdout)
