"""Codex CLI 0.169 through a real gateway: its built-in OpenAI provider (the WebSocket transport, tools in an
`additional_tools` item behind its JavaScript `exec` tool, remote compaction), in reverse mode with
`openai_base_url` and through the explicit proxy with the mitmproxy CA; and a catalog model on a custom
provider, whose `apply_patch` is a freeform (custom) tool. docs/compatibility.md records the figures."""

from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from helpers.procs import ROOT

pytestmark = pytest.mark.e2e

EXEC_JS = 'const r = await tools.exec_command({cmd: "echo pong-from-tool"}); text(r.output);'
PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hello from apply_patch\n*** End Patch\n"


def codex_binary() -> str:
    local = ROOT / ".tools" / "node_modules" / ".bin" / "codex"
    found = str(local) if local.exists() else shutil.which("codex")
    if found is None:
        pytest.skip("Codex CLI not installed (scripts/install-test-tools.sh installs @openai/codex into .tools/)")
    return found


class Codex:
    """One CODEX_HOME and work folder; `run` is one `codex exec` (or `exec resume --last`)."""

    def __init__(self, tmp_path: Path, name: str, config: str, **env: str) -> None:
        self.binary = codex_binary()
        self.home = tmp_path / f"codex-{name}"
        self.home.mkdir()
        (self.home / "config.toml").write_text(config)
        self.work = tmp_path / f"work-{name}"
        self.work.mkdir(exist_ok=True)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("OPENAI_", "CODEX_")) and k.lower() not in ("https_proxy", "http_proxy")}
        self.env.update(CODEX_HOME=str(self.home), HOME=str(tmp_path), **env)

    def run(self, prompt: str, *extra: str, resume: bool = False) -> tuple[str, float]:
        args = [self.binary, "exec", "--skip-git-repo-check", *extra]
        args += ["resume", "--last", prompt] if resume else [prompt]
        start = time.monotonic()
        r = subprocess.run(args, cwd=self.work, env=self.env, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=120)
        took = time.monotonic() - start
        log = r.stdout + r.stderr
        assert r.returncode == 0, log
        return log, took


def builtin_config(gw) -> str:
    return f'openai_base_url = "{gw.url}/v1"\n'


def custom_config(gw, model: str = "coder-model") -> str:
    return (f'model = "{model}"\nmodel_provider = "qwenproxy"\napproval_policy = "never"\n'
            'sandbox_mode = "workspace-write"\n[model_providers.qwenproxy]\nname = "Qwen gateway"\n'
            f'base_url = "{gw.url}/v1"\nenv_key = "QWENPROXY_API_KEY"\nwire_api = "responses"\n')


def text_of(content) -> str:
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content or [])


# Codex's own race, not the gateway's: it reads its models cache (CODEX_HOME/models_cache.json) while it is still
# writing it (an empty file: "EOF while parsing"), and its turn goes on; seen once, in a loaded CI run
CODEX_OWN = re.compile(r"^.*ERROR codex_models_manager::manager: failed to load models cache: EOF while parsing.*$\n?",
                       re.M)


def assert_clean(log: str) -> None:
    """No ERROR line, no WebSocket retry storm, no fallback: the turn went as it would against OpenAI."""
    log = CODEX_OWN.sub("", log)
    assert "ERROR" not in log and "Reconnecting" not in log and "Falling back" not in log, log


def test_codex_builtin_provider_turn_and_tool_round_trip_over_websocket(make_gateway, emu, key_home, tmp_path):
    gw = make_gateway("codex", env=key_home)
    emu.switches(tool_calls="always", tool_arguments={"cmd": "echo pong-from-tool"})
    custom_log, custom_took = Codex(tmp_path, "custom", custom_config(gw), QWENPROXY_API_KEY="client-key").run(
        "say pong")
    assert_clean(custom_log)
    assert "pong-from-tool" in custom_log and "Tool said:" in custom_log  # custom provider: HTTPS, a tool round trip
    custom_chats = emu.chat_requests()
    assert len(custom_chats) == 2 and custom_chats[1]["body"]["messages"][-1]["role"] == "tool"
    emu.reset()
    emu.switches(tool_calls="always", tool_arguments={"input": EXEC_JS})
    log, took = Codex(tmp_path, "builtin", builtin_config(gw), OPENAI_API_KEY="client-key").run("say pong")
    assert_clean(log)
    assert "pong-from-tool" in log and "Tool said:" in log  # Codex ran the model's JavaScript, then answered
    chats = emu.chat_requests()
    assert len(chats) == 2
    first, second = (c["body"] for c in chats)
    names = [t["function"]["name"] for t in first["tools"]]
    assert names[0] == "exec" and "clock__sleep" in names  # additional_tools, namespaces flattened
    assert first["tools"][0]["function"]["parameters"]["required"] == ["input"]  # the freeform exec tool
    assert second["messages"][-1]["role"] == "tool"
    assert "pong-from-tool" in json.dumps(second["messages"][-1]["content"])
    assert re.search(r"GET /v1/responses .* 101 ", gw.log())  # the turn went over the WebSocket (the request line)
    print(f"\nCodex turn with a tool round trip: built-in provider (WebSocket) {took:.2f} s, "
          f"custom provider (HTTPS) {custom_took:.2f} s")


def test_codex_builtin_provider_through_the_explicit_proxy(make_gateway, emu, key_home, tmp_path):
    gw = make_gateway("proxy", mode="regular", env=key_home, connlog=True)
    emu.switches(tool_calls="always", tool_arguments={"input": EXEC_JS})
    codex = Codex(tmp_path, "proxy", "", OPENAI_API_KEY="sk-real-openai-key", HTTPS_PROXY=gw.url,
                  CODEX_CA_CERTIFICATE=str(gw.ca_cert))
    log, took = codex.run("say pong")
    assert_clean(log)
    assert "pong-from-tool" in log and len(emu.chat_requests()) == 2
    assert not any("openai.com" in c for c in gw.connections()), gw.connections()
    assert "sk-real-openai-key" not in json.dumps(emu.requests())
    print(f"\nCodex built-in provider through the explicit proxy: {took:.2f} s")


@pytest.mark.parametrize("mode", ["reverse", "explicit proxy"])
def test_codex_builtin_provider_remote_compaction(make_gateway, emu, key_home, tmp_path, mode):
    """Turn 1 leaves a large tool output in the context; turn 2 starts over the compaction limit, so Codex
    asks the gateway to compact (a trailing compaction_trigger) and continues from the sealed item."""
    limit = "model_auto_compact_token_limit = 30000\n"  # turn 1 ends under it, turn 2 starts over (24K–39K; the tools count as prompt)
    if mode == "reverse":
        gw = make_gateway("compact", env=key_home)
        codex = Codex(tmp_path, "compact", builtin_config(gw) + limit, OPENAI_API_KEY="client-key")
    else:  # unchanged Codex: no base URL, only the proxy and the CA
        gw = make_gateway("compact-proxy", mode="regular", env=key_home)
        codex = Codex(tmp_path, "compact", limit, OPENAI_API_KEY="sk-real-openai-key", HTTPS_PROXY=gw.url,
                      CODEX_CA_CERTIFICATE=str(gw.ca_cert))
    emu.switches(tool_calls="always", tool_arguments={"input": 'const r = await tools.exec_command({cmd: "seq 1 8000", '
                                          'max_output_tokens: 30000}); text(r.output);'})
    log, _ = codex.run("count")
    assert_clean(log)
    assert "context compacted" not in log
    emu.reset()
    emu.switches(tool_calls="always", tool_arguments={"input": EXEC_JS})
    log, took = codex.run("go on", resume=True)
    assert_clean(log)
    assert "context compacted" in log and "pong-from-tool" in log
    compaction, after, last = (c["body"] for c in emu.chat_requests())
    assert "tools" not in compaction and text_of(compaction["messages"][0]["content"]).startswith("You are compacting")
    texts = [text_of(m["content"]) for m in after["messages"]]
    assert any(t.startswith("Summary of the earlier conversation") for t in texts)  # the sealed item came back
    assert not any("\n4000\n4001\n" in t for t in texts)  # the large output is gone from the context
    assert last["messages"][-1]["role"] == "tool"
    print(f"\nCodex turn with a remote compaction: {took:.2f} s")


def test_codex_catalog_model_apply_patch_is_a_custom_tool(make_gateway, emu, key_home, tmp_path):
    gw = make_gateway("catalog", env=key_home)
    # Codex's catalog tools: exec_command, write_stdin, request_user_input, apply_patch, …; the emulator calls
    # the first N tools it is offered, so the fourth call is apply_patch (the others fail in Codex, as expected)
    emu.switches(tool_calls="always", tool_arguments={"input": PATCH}, tool_calls_count=4)
    codex = Codex(tmp_path, "catalog", custom_config(gw, "gpt-5.5"), QWENPROXY_API_KEY="client-key")
    log, _ = codex.run("add hello.txt")
    assert (codex.work / "hello.txt").read_text() == "hello from apply_patch\n", log
    errors = [line for line in log.splitlines() if "ERROR" in line]
    assert all("codex_core::tools::router" in line for line in errors), errors  # only the emulator's other calls
    first, second = (c["body"] for c in emu.chat_requests())
    tools = {t["function"]["name"]: t["function"] for t in first["tools"]}
    assert tools["apply_patch"]["parameters"]["required"] == ["input"]
    assert "*** Begin Patch" in tools["apply_patch"]["description"]  # its lark grammar goes with it
    assert "tool_search" in tools and "web_search" not in tools
    patch_call = next(c for m in second["messages"] if m["role"] == "assistant" for c in m.get("tool_calls") or []
                      if c["function"]["name"] == "apply_patch")
    assert json.loads(patch_call["function"]["arguments"]) == {"input": PATCH}
    result = next(m for m in second["messages"] if m.get("tool_call_id") == patch_call["id"])
    assert "hello.txt" in json.dumps(result["content"])  # Codex answered it as a custom_tool_call_output


def test_codex_opens_a_new_websocket_after_the_gateway_closed_an_idle_one(make_gateway, emu, key_home, tmp_path):
    """qwen_websocket_idle_timeout=1: while Codex runs its tool (2 s), its socket idles out and the gateway closes
    it; Codex sends the next turn on a new socket, its whole conversation again (store: false), cleanly."""
    gw = make_gateway("idle", env=key_home, args=("--set", "qwen_websocket_idle_timeout=1"))
    emu.switches(tool_calls="always", tool_arguments={
        "input": 'const r = await tools.exec_command({cmd: "sleep 2; echo pong-from-tool"}); text(r.output);'})
    log, took = Codex(tmp_path, "idle", builtin_config(gw), OPENAI_API_KEY="client-key").run("say pong")
    assert_clean(log)
    assert "pong-from-tool" in log and "Tool said:" in log
    first, second = (c["body"] for c in emu.chat_requests())
    assert second["messages"][-1]["role"] == "tool" and "pong-from-tool" in json.dumps(second["messages"][-1])
    assert len(re.findall(r"GET /v1/responses .* 101 ", gw.log())) == 2  # a second socket for the second turn
    print(f"\nCodex turn whose socket idled out during its tool: {took:.2f} s")


def test_websockets_off_means_one_refusal_and_an_immediate_fallback(make_gateway, emu, key_home, tmp_path):
    gw = make_gateway("nows", env=key_home, args=("--set", "websocket=false"))
    emu.switches(tool_calls="always", tool_arguments={"input": EXEC_JS})
    log, took = Codex(tmp_path, "nows", builtin_config(gw), OPENAI_API_KEY="client-key").run("say pong")
    assert "pong-from-tool" in log and "Reconnecting" not in log
    assert gw.log().count("GET /v1/responses") == 1 and " 426 " in gw.log()  # one attempt, then HTTPS
    print(f"\nCodex with WebSockets refused (426): {took:.2f} s")


@pytest.mark.parametrize("effort", ["high", "xhigh"])
def test_codex_on_qwen4_max_sends_its_effort_as_the_model_names_it(make_gateway, emu, key_home, tmp_path, effort):
    """Codex's `model_reasoning_effort` on qwen4-max, an effort model from none to max in the catalogue: Qwen gets
    `reasoning_effort` itself, never a bare `enable_thinking` or a `thinking_budget` (issue 49: guessed as a
    hybrid model from its name), and the cap as `max_completion_tokens` when one is asked."""
    gw = make_gateway("codex", env=key_home)
    config = f'model_reasoning_effort = "{effort}"\n' + custom_config(gw, "qwen4-max")  # a top-level key: first
    log, _ = Codex(tmp_path, f"effort-{effort}", config, QWENPROXY_API_KEY="client-key").run("say pong")
    assert_clean(log)
    assert "Echo: say pong" in log
    (chat,) = emu.chat_requests()
    body = chat["body"]
    assert body["model"] == "qwen4-max" and body.get("reasoning_effort") == effort, str(
        {k: v for k, v in body.items() if k not in ("messages", "tools")})
    assert "enable_thinking" not in body and "thinking_budget" not in body and "max_tokens" not in body
