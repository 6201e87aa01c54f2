"""The OpenAI Agents SDK for Python (PyPI `openai-agents`), unchanged (tests/clients/agents_run.py): one
agent with a function tool, run through the Responses API (the SDK's default) with only OPENAI_API_KEY
set and tracing on, through transparent mode and through the explicit proxy, inside the test's network
namespace (tests/helpers/netns.py). The SDK lives in .tools/agents-venv (see scripts/install-test-tools.sh:
it cannot share .venv with mitmproxy 12.2 on Python 3.12)."""

from __future__ import annotations

import json

import pytest

from helpers.netns import (  # noqa: F401  (fixtures)
    CLIENT_KEY, ROOT, client_env, explicit_gw, mode_gw, proxy_world, transparent_gw, world)

PYTHON = ROOT / ".tools" / "agents-venv" / "bin" / "python"
SCRIPT = ROOT / "tests" / "clients" / "agents_run.py"

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not PYTHON.exists(), reason=(
    "OpenAI Agents SDK not installed (scripts/install-test-tools.sh installs it into .tools/agents-venv)"))]


def test_agents_sdk_function_tool_run(mode_gw):
    mode, gw = mode_gw
    world = gw.world
    world.reset_emulator()
    world.switches(tool_calls="always")  # a call of the offered tool, whatever the prompt (docs/emulator.md)
    mark = world.mark(gw)
    env = client_env(world.workdir, SSL_CERT_FILE=str(gw.ca_cert))
    if mode == "explicit":
        env["HTTPS_PROXY"] = gw.proxy_url
    r = world.run_client([PYTHON, SCRIPT, "What is the weather in Paris?"], env, timeout=90)
    assert r.returncode == 0, r.stderr + gw.log()[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["tool_calls"] == ["Paris"]  # Qwen (the emulator) asked for the tool, the SDK ran it
    assert out["final"] == "Tool said: sunny-in-Paris"  # and the tool's result went back to Qwen
    chats = world.chat_requests()
    assert len(chats) == 2
    assert [t["function"]["name"] for t in chats[0]["body"]["tools"]] == ["get_weather"]
    assert chats[1]["body"]["messages"][-1] == {**chats[1]["body"]["messages"][-1], "role": "tool",
                                                 "content": "sunny-in-Paris"}
    assert all(CLIENT_KEY not in json.dumps(c["headers"]) for c in chats)
    assert "POST /v1/responses" in gw.log()  # the SDK spoke the Responses API
    assert world.leaks(gw, mark) == []  # its trace upload included: answered by the gateway, not sent on
    assert "POST /v1/traces/ingest route=traces 204" in gw.log() and "Tracing client error" not in r.stderr
