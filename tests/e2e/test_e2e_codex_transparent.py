"""Unchanged Codex (built-in OpenAI provider) through transparent mode: inside a network namespace where
api.openai.com resolves to a fake origin and `qwen-redirect run` sends its traffic to mitmdump, Codex with
only OPENAI_API_KEY and the gateway's CA completes a turn with a tool round trip, over the Responses
WebSocket the gateway serves. Nothing reaches the fake api.openai.com."""

from __future__ import annotations

import json
import time

import pytest

from helpers.netns import (  # noqa: F401  (fixtures)
    CLIENT_KEY, PY, client_env, transparent_gw, world)
from e2e.test_e2e_codex import EXEC_JS, assert_clean, codex_binary

pytestmark = pytest.mark.e2e


def set_switches(world, **values) -> None:
    code = ("import json,urllib.request as u;u.urlopen(u.Request("
            f"'http://127.0.0.1:{world.emu_port}/_emulator/switches',data=json.dumps({values!r}).encode(),"
            "headers={'content-type':'application/json'}),timeout=10)")
    r = world.ns.run([PY, "-c", code], timeout=30)
    assert r.returncode == 0, r.stderr


def test_codex_builtin_provider_through_transparent_mode(world, transparent_gw):
    codex = codex_binary()
    world.reset_emulator()
    set_switches(world, tool_calls="always", tool_arguments={"input": EXEC_JS})
    home = world.workdir / "codex-home"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text("")  # nothing about the gateway: the built-in OpenAI provider
    work = world.workdir / "codex-work"
    work.mkdir(exist_ok=True)
    mark = world.mark(transparent_gw)
    env = client_env(world.workdir, CODEX_HOME=str(home), CODEX_CA_CERTIFICATE=str(transparent_gw.ca_cert))
    start = time.monotonic()
    r = world.ns.run([codex, "exec", "--skip-git-repo-check", "say pong"], timeout=120, env=env, cwd=str(work))
    took = time.monotonic() - start
    log = r.stdout + r.stderr
    assert r.returncode == 0, log + transparent_gw.log()[-3000:]
    assert_clean(log)
    assert "pong-from-tool" in log and "Tool said:" in log  # a tool round trip, answered by Qwen (the emulator)
    chats = world.chat_requests()
    assert len(chats) == 2 and chats[1]["body"]["messages"][-1]["role"] == "tool"
    assert CLIENT_KEY not in json.dumps(chats)  # the user's OpenAI key never went upstream
    assert world.leaks(transparent_gw, mark) == []  # nothing reached api.openai.com
    # the same turn with a custom provider (plain HTTPS, no WebSocket), in the same namespace
    world.reset_emulator()
    set_switches(world, tool_calls="always", tool_arguments={"cmd": "echo pong-from-tool"})
    custom = world.workdir / "codex-custom"
    custom.mkdir(exist_ok=True)
    (custom / "config.toml").write_text(
        'model = "coder-model"\nmodel_provider = "qwenproxy"\napproval_policy = "never"\n'
        'sandbox_mode = "workspace-write"\n[model_providers.qwenproxy]\nname = "Qwen gateway"\n'
        'base_url = "https://api.openai.com/v1"\nenv_key = "OPENAI_API_KEY"\nwire_api = "responses"\n')
    start = time.monotonic()
    r = world.ns.run([codex, "exec", "--skip-git-repo-check", "say pong"], timeout=120, cwd=str(work),
                     env={**env, "CODEX_HOME": str(custom)})
    custom_took = time.monotonic() - start
    assert r.returncode == 0 and "pong-from-tool" in r.stdout + r.stderr, r.stdout + r.stderr
    print(f"\nCodex through transparent mode: built-in provider {took:.2f} s, custom provider {custom_took:.2f} s")


def test_codex_builtin_provider_remote_compaction_through_transparent_mode(world, transparent_gw):
    """As tests/e2e/test_e2e_codex.py's compaction test, with the unchanged client inside the namespace."""
    codex = codex_binary()
    world.reset_emulator()
    set_switches(world, tool_calls="always", tool_arguments={"input": 'const r = await tools.exec_command({cmd: "seq 1 8000", '
                                                 'max_output_tokens: 30000}); text(r.output);'})
    home = world.workdir / "codex-compact"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text("model_auto_compact_token_limit = 30000\n")
    work = world.workdir / "codex-compact-work"
    work.mkdir(exist_ok=True)
    mark = world.mark(transparent_gw)
    env = client_env(world.workdir, CODEX_HOME=str(home), CODEX_CA_CERTIFICATE=str(transparent_gw.ca_cert))
    r = world.ns.run([codex, "exec", "--skip-git-repo-check", "count"], timeout=120, env=env, cwd=str(work))
    assert r.returncode == 0, r.stdout + r.stderr
    world.reset_emulator()
    set_switches(world, tool_calls="always", tool_arguments={"input": EXEC_JS})
    r = world.ns.run([codex, "exec", "--skip-git-repo-check", "resume", "--last", "go on"], timeout=120, env=env,
                     cwd=str(work))
    log = r.stdout + r.stderr
    assert r.returncode == 0, log
    assert_clean(log)
    assert "context compacted" in log and "pong-from-tool" in log
    compaction = world.chat_requests()[0]["body"]
    assert "tools" not in compaction  # the summarisation call the gateway made for the compaction trigger
    assert world.leaks(transparent_gw, mark) == []
