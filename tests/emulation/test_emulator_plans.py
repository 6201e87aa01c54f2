"""The Coding Plan's rule for its clients on the emulator (scripts/emulator/plans.py, switch
`coding_plan_agents_only`): a client whose User-Agent names no coding agent gets the plan's 405 on the plan's
paths (`/v1/chat/completions`, the Anthropic-compatible base), as users have met it since 2026-03
(aaif-goose/goose#8005, iOfficeAI/AionUi#2555); pay-as-you-go's path and coding agents are served."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from emulation.test_emulator import API_KEY, SEED, emulator_fixtures

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from emulator import plans  # noqa: E402

pytestmark = pytest.mark.e2e  # starts an emulator process

REFUSAL = {"error": "Coding Plan is currently only available for Coding Agents"}
CHAT = {"model": "qwen3-coder-plus", "messages": [{"role": "user", "content": "hi"}]}
MESSAGE = {"model": "qwen3-coder-plus", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
CLAUDE_CODE = "claude-cli/2.0.0 (external, cli)"

proc, emu = emulator_fixtures("--quiet", "--api-key", API_KEY, "--seed-token", SEED)


@pytest.mark.parametrize("agent, coding", [
    (CLAUDE_CODE, True), ("QwenCode/0.14.5 (linux; x64)", True), ("opencode/0.3.1", True),
    ("Kilo-Code/4.1", True), ("OpenAI/Python 1.99.0", False), ("python-httpx/0.28.1", False),
    ("qwen-gateway/0.1.0", False), ("", False)])
def test_a_coding_agent_is_told_by_its_user_agent(agent, coding):
    assert plans.coding_agent(agent) is coding


def test_the_switch_refuses_other_clients_on_the_plans_paths_only(emu):
    def chat(path: str, agent: str):
        return emu.http.post(path, json=CHAT, headers={"Authorization": f"Bearer {API_KEY}", "User-Agent": agent})

    assert chat("/v1/chat/completions", "OpenAI/Python 1.99.0").status_code == 200  # off by default
    emu.admin("POST", "switches", {"coding_plan_agents_only": True})
    r = chat("/v1/chat/completions", "OpenAI/Python 1.99.0")
    assert (r.status_code, r.json()) == (405, REFUSAL)
    assert chat("/v1/chat/completions", CLAUDE_CODE).status_code == 200
    assert chat("/compatible-mode/v1/chat/completions", "OpenAI/Python 1.99.0").status_code == 200  # pay-as-you-go
    messages = emu.http.post("/apps/anthropic/v1/messages", json=MESSAGE, headers={
        "x-api-key": API_KEY, "anthropic-version": "2023-06-01", "User-Agent": "Anthropic/Python 0.60.0"})
    assert (messages.status_code, messages.json()) == (405, REFUSAL)
    assert emu.http.post("/apps/anthropic/v1/messages", json=MESSAGE, headers={
        "x-api-key": API_KEY, "anthropic-version": "2023-06-01", "User-Agent": CLAUDE_CODE}).status_code == 200
    assert emu.admin("GET", "requests")[-1]["headers"]["user-agent"] == CLAUDE_CODE  # refused ones are logged too
