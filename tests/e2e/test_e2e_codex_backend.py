"""Unchanged Codex with CODEX_API_KEY through the explicit proxy, in a loopback-only network namespace where
api.openai.com resolves to a fake origin that counts every connection and chatgpt.com to an address where
nothing listens. Codex refreshes its model list from `https://chatgpt.com/backend-api/codex/models` with the key:
the gateway answers that itself (api/models.codex_catalog). Nothing reaches api.openai.com, no request that
carries the key passes through, no ERROR line, and the turn takes about as long as with a custom provider."""

from __future__ import annotations

import json
import time

import pytest

from helpers.claude_ns import FLOWLOG_ADDON
from helpers.netns import CLIENT_KEY, client_env, proxy_world  # noqa: F401  (fixtures)
from e2e.test_e2e_codex import EXEC_JS, assert_clean, codex_binary
from e2e.test_e2e_codex_transparent import set_switches

pytestmark = pytest.mark.e2e


def codex_run(world, gw, name: str, config: str, **env: str) -> tuple[str, float]:
    home = world.workdir / f"codex-{name}"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(config)
    work = world.workdir / f"work-{name}"
    work.mkdir(exist_ok=True)
    base = {k: v for k, v in client_env(world.workdir).items() if k != "OPENAI_API_KEY"}
    start = time.monotonic()
    r = world.ns.run([codex_binary(), "exec", "--skip-git-repo-check", "say pong"], timeout=120, cwd=str(work),
                     env={**base, "CODEX_HOME": str(home), "HTTPS_PROXY": gw.proxy_url,
                          "CODEX_CA_CERTIFICATE": str(gw.ca_cert), **env})
    took = time.monotonic() - start
    log = r.stdout + r.stderr
    assert r.returncode == 0, log + gw.log()[-3000:]
    return log, took


@pytest.fixture(scope="module")
def logged_gw(proxy_world):
    """The explicit proxy, recording every request it receives (tests/helpers/flowlog.py)."""
    flows = proxy_world.workdir / "codex-key-flows.jsonl"
    gw = proxy_world.gateway("codex-key", "regular", args=["-s", FLOWLOG_ADDON, "--set", f"test_flowlog={flows}"])
    gw.flows = lambda: [json.loads(line) for line in flows.read_text().splitlines()] if flows.exists() else []
    yield gw
    gw.stop()


def test_codex_with_codex_api_key_gets_its_model_list_from_the_gateway(proxy_world, logged_gw):
    world, gw = proxy_world, logged_gw
    world.reset_emulator()
    set_switches(world, tool_calls="always", tool_arguments={"input": EXEC_JS})
    mark = world.mark(gw)
    log, took = codex_run(world, gw, "builtin", "", CODEX_API_KEY=CLIENT_KEY)
    assert_clean(log)
    assert "pong-from-tool" in log and "Tool said:" in log
    assert world.leaks(gw, mark) == []  # nothing reached api.openai.com
    assert CLIENT_KEY not in json.dumps(world.chat_requests())
    backend = [f for f in gw.flows() if f["host"] == "chatgpt.com" and f["method"] != "CONNECT"]
    refreshes = [f for f in backend if f["path"].startswith("/backend-api/codex/models?")]
    assert refreshes and all(f["status"] == 200 for f in refreshes), backend
    assert "GET /backend-api/codex/models route=codex_models 200" in gw.log()  # answered by the gateway
    # what else Codex fetches from chatgpt.com (its curated plugin list) carries no key and may pass through
    assert not any(f["auth"] for f in backend if f not in refreshes), backend
    # the same turn with a custom provider (no model-list refresh from chatgpt.com), in the same namespace
    world.reset_emulator()
    set_switches(world, tool_calls="always", tool_arguments={"cmd": "echo pong-from-tool"})
    custom = ('model = "coder-model"\nmodel_provider = "qwenproxy"\napproval_policy = "never"\n'
              'sandbox_mode = "workspace-write"\n[model_providers.qwenproxy]\nname = "Qwen gateway"\n'
              'base_url = "https://api.openai.com/v1"\nenv_key = "QWENPROXY_API_KEY"\nwire_api = "responses"\n')
    _, custom_took = codex_run(world, gw, "custom", custom, QWENPROXY_API_KEY=CLIENT_KEY)
    print(f"\nCodex with CODEX_API_KEY through the explicit proxy: built-in provider {took:.2f} s, "
          f"custom provider {custom_took:.2f} s")
