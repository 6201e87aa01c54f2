"""Real Claude Code (2.1.328) on the team's own vLLM server (issue 78's first complaint): a 2026 vLLM (the emulator's
`--vllm-version 0.20.0`) serving a Qwen3-8B with its default window, 40,960 tokens, the hermes tool parser, through a
real mitmdump in Claude Code's own namespace (tests/helpers/claude_ns.py).

Claude Code asks 128,000 output tokens of every request; vLLM refuses a prompt plus cap over its window and never
lowers the cap. Before, the gateway read that refusal as a prompt too long and Claude Code, told it could not compact a
single exchange, exited on its first turn. Now the cap is fitted to the window the server lists: a first turn and a tool
turn end as a success. And a conversation that truly outgrows a smaller server's window is told so in the words Claude
Code compacts by (`prompt is too long: N tokens > M maximum`, the server's own numbers), and goes on."""

from __future__ import annotations

import re

import pytest

from helpers.claude_ns import ClaudeWorld, claude_unavailable, flows, stream_json
from helpers.home import Home
from helpers.netns import EMU_KEY, EMULATOR, PY, _wait_for, namespace_unavailable
from e2e.test_e2e_claude_code import STREAM_JSON, base_url_env
from e2e.test_e2e_claude_code_context import assert_compacted_by_the_gap, fresh, run_turns

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

WINDOW = 40960
TOO_LONG = re.compile(r"prompt is too long: (\d+) tokens > (\d+) maximum")


def serve(world: ClaudeWorld, name: str, window: int) -> int:
    """A vLLM emulator in the world's namespace; its port."""
    portfile = world.workdir / f"{name}.port"
    proc = world.spawn([PY, EMULATOR, "--serve", "vllm", "--vllm-version", "0.20.0", "--host", "127.0.0.1", "--port",
                        "0", "--port-file", portfile, "--api-key", EMU_KEY, "--reasoning-parser", "qwen3",
                        "--enable-auto-tool-choice", "--tool-call-parser", "hermes", "--max-model-len", str(window),
                        "--quiet"], log=world.workdir / f"{name}.log")
    return int(_wait_for(portfile, proc, f"vLLM emulator {name}").strip())


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    reason = namespace_unavailable() or claude_unavailable()
    if reason:
        pytest.skip(reason)
    w = ClaudeWorld(tmp_path_factory.mktemp("claude-gpu")).start()
    try:
        w.ports = {"default": serve(w, "default", WINDOW), "small": serve(w, "small", SMALL)}
        yield w
    finally:
        w.stop()


def on_server(world: ClaudeWorld, which: str):
    """A recording gateway whose one account is the server `which`; the world's emulator helpers talk to it."""
    world.emu_port = world.ports[which]
    world.reset_emulator()
    home = Home(world.state, state=world.state)  # the world's gateways bring their own env, EMU_KEY in it
    home.selfhosted("gpu", f"http://127.0.0.1:{world.emu_port}/v1", key_env="EMU_KEY", secret=EMU_KEY)
    home.write()
    return world.recording_gateway(f"gw-{which}", "reverse:https://portal.qwen.ai")


def success(r) -> list[dict]:
    events = stream_json(r)
    result = events[-1] if events else {}
    assert r.returncode == 0 and result.get("subtype") == "success" and result.get("is_error") is False, (
        f"exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-2000:]}")
    return events


def ran(events: list[dict]) -> bool:
    return any(b.get("type") == "tool_result" and b.get("is_error") is False for e in events
               if e.get("type") == "user" for b in e["message"]["content"] if isinstance(b, dict))


def test_claude_code_first_turn_and_tool_turn_with_its_default_cap(world):
    gw = on_server(world, "default")
    try:
        r, _, _ = world.claude("say hello", *STREAM_JSON, env=base_url_env(gw), timeout=240)
        success(r)
        world.switches(tool_arguments={"command": "echo from-bash"})
        r, _, _ = world.claude("use Bash to run echo from-bash", "--tools", "Bash", "--allowedTools", "Bash",
                               *STREAM_JSON, env=base_url_env(gw), timeout=240)
        assert ran(success(r)), "Bash never ran"
        caps = [r["body"].get("max_completion_tokens") or r["body"].get("max_tokens")
                for r in world.chat_requests()]
        assert caps and all(isinstance(c, int) and c < WINDOW for c in caps), caps  # 128,000 asked: fitted
        statuses = [f["status"] for f in flows(gw) if "/v1/messages" in f["path"]]
        assert statuses and set(statuses) == {200}, statuses
    finally:
        gw.stop()


SMALL = 14000  # Claude Code's first turn with Bash alone fits; two turns of `seq 1 1500` do not


def test_claude_code_compacts_when_the_conversation_outgrows_the_servers_window(world):
    gw = on_server(world, "small")
    try:
        mark = fresh(world, gw)
        turns = run_turns(world, gw)
        assert_compacted_by_the_gap(world, gw, mark, turns, SMALL, guard=False)  # the server's own numbers
    finally:
        gw.stop()
