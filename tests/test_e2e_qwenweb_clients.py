"""Real clients on a Qwen Chat web account (issue #24, "Done when"): Codex CLI on a custom provider (the Responses
API over HTTPS) with a tool round trip, and simonw's `llm` on both APIs. The web account, the emulator and the
gateway are test_e2e_qwenweb.py's `web` fixture; the openai SDK's turns (chat, stream, tools, Responses) are there."""

from __future__ import annotations

import os
import subprocess

import pytest

from helpers.procs import BIN
from test_e2e_codex import PATCH, Codex, assert_clean, custom_config
from test_e2e_qwenweb import web  # noqa: F401  (the fixture)

pytestmark = pytest.mark.e2e


def test_codex_custom_provider_turn_with_a_tool_round_trip(web, tmp_path):  # noqa: F811
    web.admin("switches", tool_call={"name": "exec_command", "arguments": {"cmd": "echo pong-from-tool"}},
              tool_call_times=1, reply="Tool said: done")
    codex = Codex(tmp_path, "web", custom_config(web.gw, "qwen3.7-plus"), QWENPROXY_API_KEY="client-key")
    log, _ = codex.run("say pong")
    assert_clean(log)
    assert "pong-from-tool" in log and "Tool said: done" in log  # Codex ran the call, then got the answer
    first, second = web.sent()
    assert "exec_command" in first["messages"][0]["content"]  # Codex's tools, described in the prompt
    text = second["messages"][0]["content"]
    assert "Tool result (" in text and "pong-from-tool" in text  # the tool's output folded back as text
    assert first["model"] == second["model"] == "qwen3.7-plus"


def test_codex_catalog_model_apply_patch_on_a_web_account(web, tmp_path):  # noqa: F811
    """apply_patch is a freeform (custom) tool: the prompt-emulated call must come back as Codex's custom call."""
    web.admin("switches", tool_call={"name": "apply_patch", "arguments": {"input": PATCH}}, tool_call_times=1,
              reply="Patched.")
    codex = Codex(tmp_path, "patch", custom_config(web.gw, "gpt-5.5"), QWENPROXY_API_KEY="client-key")
    log, _ = codex.run("add hello.txt")
    assert_clean(log)
    assert (codex.work / "hello.txt").read_text() == "hello from apply_patch\n", log
    assert "Patched." in log
    first, second = web.sent()
    assert "apply_patch" in first["messages"][0]["content"] and "*** Begin Patch" in first["messages"][0]["content"]
    assert "hello.txt" in second["messages"][0]["content"]  # Codex's custom_tool_call_output, folded back


@pytest.mark.parametrize("api", [[], ["--responses"]], ids=["chat-completions", "responses"])
@pytest.mark.parametrize("stream", [["--no-stream"], []], ids=["whole", "stream"])
def test_llm_cli_on_a_web_account(web, tmp_path, api, stream):  # noqa: F811
    env = {**os.environ, "LLM_USER_PATH": str(tmp_path / "llm")}
    r = subprocess.run([str(BIN / "llm"), "openai", "endpoint", web.gw.url + "/v1", "say pong", "-m", "gpt-4o",
                        "--key", "client-key", *stream, *api], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("Echo: say pong"), r.stdout
    body, = web.sent()
    assert body["messages"][0]["content"] == "say pong"
