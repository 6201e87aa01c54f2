"""Unchanged Codex 0.169 through the explicit proxy posts its OTLP metrics to `ab.chatgpt.com/otlp/v1/metrics`
(about 700 KB a session: model names, auth mode, OS). The user chose Qwen and nothing of theirs reaches OpenAI:
the gateway answers that path itself with an empty OTLP success, keeps nothing of it (issue #31, item 8), and
lets it pass only when told to (`qwen_codex_telemetry=pass`). Codex's plugin catalogue (chatgpt.com, GitHub),
which carries no key, still passes through.

In a loopback-only namespace (tests/helpers/netns.py) where ab.chatgpt.com resolves to a fake origin that
counts every connection reaching it.
"""

from __future__ import annotations

import json
import time

import pytest

from helpers.claude_ns import FLOWLOG_ADDON
from helpers.netns import CLIENT_KEY, World, namespace_unavailable
from e2e.test_e2e_codex import EXEC_JS, assert_clean
from e2e.test_e2e_codex_backend import codex_run
from e2e.test_e2e_codex_transparent import set_switches

pytestmark = pytest.mark.e2e

TELEMETRY_HOST, TELEMETRY_ADDRESS = "ab.chatgpt.com", "127.0.0.7"


@pytest.fixture(scope="module")
def telemetry_world(tmp_path_factory):
    reason = namespace_unavailable()
    if reason:
        pytest.skip(f"no network namespace: {reason}")
    w = World(tmp_path_factory.mktemp("codex-telemetry"))
    w.ns.hosts[TELEMETRY_HOST] = TELEMETRY_ADDRESS
    w.start()
    try:
        w.telemetry_log = w.workdir / "ab-origin.log"
        w._origin(w.telemetry_log, f"{TELEMETRY_ADDRESS}:443", f"{TELEMETRY_ADDRESS}:80")
        yield w
    finally:
        w.stop()


def logged_gateway(world, name: str, *args: str):
    flows = world.workdir / f"{name}-flows.jsonl"
    gw = world.gateway(name, "regular", args=["-s", FLOWLOG_ADDON, "--set", f"test_flowlog={flows}", *args])
    gw.flows = lambda: [json.loads(line) for line in flows.read_text().splitlines()] if flows.exists() else []
    return gw


def codex_turn(world, gw, name: str, config: str = "") -> str:
    """One `codex exec` through the explicit proxy with CODEX_API_KEY (the built-in provider): its log."""
    return codex_run(world, gw, name, config, CODEX_API_KEY=CLIENT_KEY)[0]


def telemetry_connections(world) -> list[str]:
    time.sleep(0.5)  # the fake origin logs from its own process
    return world.telemetry_log.read_text().splitlines() if world.telemetry_log.exists() else []


def test_codex_telemetry_is_answered_by_the_gateway_and_reaches_nobody(telemetry_world):
    world = telemetry_world
    gw = logged_gateway(world, "answer")
    try:
        world.reset_emulator()
        set_switches(world, tool_calls="always", tool_arguments={"input": EXEC_JS})
        mark = len(telemetry_connections(world))
        log = codex_turn(world, gw, "answer")
        assert_clean(log)
        assert "pong-from-tool" in log and "Tool said:" in log  # the turn still works
        posts = [f for f in gw.flows() if f["host"] == TELEMETRY_HOST and f["method"] != "CONNECT"]
        assert posts and all((f["method"], f["path"], f["status"]) == ("POST", "/otlp/v1/metrics", 200)
                             for f in posts), posts
        assert telemetry_connections(world)[mark:] == []  # the fake ab.chatgpt.com saw nothing
        assert not any(c.startswith((TELEMETRY_HOST, TELEMETRY_ADDRESS)) for c in gw.connections())
        assert "POST /otlp/v1/metrics route=codex_telemetry 200" in gw.log()
        # the plugin catalogue (no key in it) still passes through: the gateway did not answer it
        passed = [f for f in gw.flows() if f["method"] == "GET" and f["path"] in (
            "/repos/openai/plugins", "/backend-api/plugins/export/curated")]
        assert {f["host"] for f in passed} == {"api.github.com", "chatgpt.com"}, gw.flows()
        assert all(f"GET https://{f['host']}{f['path']} passed" in gw.log() for f in passed)
        assert CLIENT_KEY not in json.dumps(world.chat_requests())
    finally:
        gw.stop()


def test_codex_telemetry_passes_when_told_to(telemetry_world):
    world = telemetry_world
    gw = logged_gateway(world, "pass", "--set", "qwen_codex_telemetry=pass")
    try:
        world.reset_emulator()
        set_switches(world, tool_calls="always", tool_arguments={"input": EXEC_JS})
        mark = len(telemetry_connections(world))
        codex_turn(world, gw, "pass")
        assert len(telemetry_connections(world)[mark:]) >= 1  # it went on to (the fake) ab.chatgpt.com
        assert "route=codex_telemetry" not in gw.log()
        # Codex's own switch, for transparent mode (where ab.chatgpt.com is not redirected): no metrics at all
        mark, flows = len(telemetry_connections(world)), len(gw.flows())
        codex_turn(world, gw, "no-metrics", '[otel]\nmetrics_exporter = "none"\n')
        assert telemetry_connections(world)[mark:] == []
        assert not any(f["host"] == TELEMETRY_HOST for f in gw.flows()[flows:])
    finally:
        gw.stop()
