"""Real OpenAI clients through the gateway: Codex CLI (Responses API only) and simonw's llm."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from helpers.procs import BIN
from e2e.test_e2e_codex import codex_binary

pytestmark = pytest.mark.e2e


def test_codex_exec_turn_with_a_tool_call_round_trip(make_gateway, emu, key_home, tmp_path):
    codex = codex_binary()  # skips, saying why, when Codex is not installed
    gw = make_gateway("codex", env=key_home)
    emu.switches(tool_calls="always", tool_arguments={"cmd": "echo pong-from-tool"})
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(
        'model = "coder-model"\nmodel_provider = "qwenproxy"\n[model_providers.qwenproxy]\n'
        f'name = "Qwen gateway"\nbase_url = "{gw.url}/v1"\nenv_key = "QWENPROXY_API_KEY"\nwire_api = "responses"\n')
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "CODEX_HOME": str(home), "QWENPROXY_API_KEY": "client-key", "HOME": str(tmp_path)}
    r = subprocess.run([codex, "exec", "--skip-git-repo-check", "say pong"], cwd=work, env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log
    assert "ERROR" not in log, log
    assert "pong-from-tool" in log  # Codex ran the tool the model (emulator) asked for
    chats = emu.chat_requests()
    assert len(chats) == 2
    second = chats[1]["body"]["messages"]
    content = second[-1]["content"]  # a string, or text parts (qwen-code's cache_control on the last message)
    text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
    assert second[-1]["role"] == "tool" and "pong-from-tool" in text
    assert "Tool said:" in log  # and the final answer came back after the round trip
    tools = [t["function"]["name"] for t in chats[0]["body"]["tools"]]
    assert "exec_command" in tools and all(t.get("type") == "function" for t in chats[0]["body"]["tools"])


@pytest.mark.parametrize("api", [[], ["--responses"]], ids=["chat-completions", "responses"])
def test_llm_cli_both_apis(make_gateway, emu, key_home, tmp_path, api):
    gw = make_gateway("llm", env=key_home)
    env = {**os.environ, "LLM_USER_PATH": str(tmp_path / "llm")}
    r = subprocess.run([str(BIN / "llm"), "openai", "endpoint", gw.url + "/v1", "say pong", "-m", "coder-model",
                        "--key", "client-key", "--no-stream", *api], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("Echo: say pong")
    assert Path(emu.chat_requests()[0]["path"]).name == "completions"
