"""`qwen-auth check NAME [--deep]` on a team's own server (issue 82 item 3): the installed command against the
emulator's 2026 vLLM. Before, `check` knew no way to ask a self-hosted server (exit 1). Now it reads the server's list
(its models, each one's window, its release), names a window too small for an agent and a default model the server
does not serve, and --deep sends two small requests: `tool_choice: "auto"` (refused by a server started without a
tool parser) and thinking asked (the reasoning apart from the answer only with a reasoning parser)."""

from __future__ import annotations

import pytest

from qwen_gateway.auth.registry import Registry
from helpers.auth_env import Server, run_cli, settings_for
from helpers.procs import start_emulator

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

KEY = "sk-team-gpu"
MODEL = "Qwen/Qwen3.6-27B"


def check(tmp_path, server, *args: str, default_model: str = MODEL) -> tuple[int, str, str]:
    home = tmp_path / default_model.replace("/", "_")  # an account of its own for each default model
    home.mkdir(exist_ok=True)
    settings = settings_for(home, Server(server.proc, server.port))
    Registry(settings).put({"name": "gpu", "kind": "key", "provider": "selfhosted", "base_url": server.url + "/v1",
                            "key_env": "GPU_KEY", "default_model": default_model})
    rc, out, err = run_cli(settings, "check", "gpu", *args, env={"GPU_KEY": KEY})
    assert KEY not in out + err
    return rc, out, err


def test_a_server_without_a_tool_parser_and_with_a_small_window_is_named(tmp_path):
    server = start_emulator(tmp_path, "--serve", "vllm", "--vllm-version", "0.20.0", "--model", MODEL, "--api-key",
                            KEY, "--max-model-len", "40960")
    try:
        rc, out, err = check(tmp_path, server, "--deep")
    finally:
        server.stop()
    assert rc == 6, out + err
    assert "DIFF window: Qwen/Qwen3.6-27B's is 40,960 tokens" in out
    assert "DIFF tool calls: the server refuses tool_choice \"auto\"" in out and "--tool-call-parser" in out
    assert "DIFF reasoning:" in out and "--reasoning-parser qwen3" in out
    assert "ok vllm 0.20.0 serves Qwen/Qwen3.6-27B (40,960-token window)" in out
    assert "spent:" in out and "(2 requests)" in out


def test_a_server_started_for_agents_has_no_difference_and_a_model_it_does_not_serve_is_named(tmp_path):
    server = start_emulator(tmp_path, "--serve", "vllm", "--vllm-version", "0.20.0", "--model", MODEL, "--api-key",
                            KEY, "--max-model-len", "131072", "--reasoning-parser", "qwen3",
                            "--enable-auto-tool-choice", "--tool-call-parser", "qwen3_coder")
    try:
        rc, out, err = check(tmp_path, server, "--deep")
        assert rc == 0, out + err
        assert "ok tool calls: tool_choice \"auto\" taken" in out and "ok reasoning apart from the answer" in out
        rc, out, err = check(tmp_path, server, default_model="qwen3-coder-plus")
    finally:
        server.stop()
    assert rc == 6 and "DIFF default model: qwen3-coder-plus is not served" in out, out + err
