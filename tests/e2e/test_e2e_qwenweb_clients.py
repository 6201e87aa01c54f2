"""Real clients on a Qwen Chat web account (issue #24, "Done when"): Codex CLI on a custom provider (the Responses
API over HTTPS) with a tool round trip, and simonw's `llm` on both APIs. The web account, the emulator and the
gateway are test_e2e_qwenweb.py's `web` fixture; the openai SDK's turns (chat, stream, tools, Responses) are there.
And the live models (issue #24 item 5): the web catalogue in /v1/models, a model it lacks sent to its best."""

from __future__ import annotations

import os
import subprocess
import time

import httpx
import pytest

from helpers.procs import BIN
from e2e.test_e2e_codex import PATCH, Codex, assert_clean, custom_config
from e2e.test_e2e_qwenweb import web  # noqa: F401  (the fixture)

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


def listed(web) -> dict[str, str]:  # noqa: F811  (the fixture's name)
    r = httpx.get(web.gw.url + "/v1/models", headers={"authorization": "Bearer client-key"}, trust_env=False)
    assert r.status_code == 200, r.text
    return {m["id"]: m["owned_by"] for m in r.json()["data"]}


def test_models_live_from_the_web_catalogue(web):  # noqa: F811
    """The catalogue rotated: /v1/models lists it (fetched in the background, no credential sent), and a
    model it lacks, or an OpenAI name, goes to its best current model."""
    web.admin("switches", models=["qwen3.5-plus", "qwen4-plus", "qwen3-coder-plus"])
    for _ in range(100):  # the first answer is the cache (here the static list); the fetch runs behind it
        models = listed(web)
        if "qwen4-plus" in models:
            break
        time.sleep(0.1)
    assert models["qwen4-plus"] == "qwen-web" and models["qwen3.5-plus"] == "qwen-web"
    fetch, = web.requests("/api/models")
    assert "cookie" not in fetch["headers"] and "authorization" not in fetch["headers"]
    for asked in ("gpt-4o", "qwen3.7-plus"):  # not in the catalogue any more
        assert web.client.chat.completions.create(
            model=asked, messages=[{"role": "user", "content": "hi"}]).choices[0].message.content == "Echo: hi"
    web.client.chat.completions.create(model="qwen3.5-plus", messages=[{"role": "user", "content": "hi"}])
    assert [b["model"] for b in web.sent()] == ["qwen4-plus", "qwen4-plus", "qwen3.5-plus"]
    assert len(web.requests("/api/models")) == 1  # cached: one fetch per TTL


def test_no_web_catalogue_unless_opted_in(make_gateway, emu, key_home):
    gw = make_gateway("keys", env={**key_home, "QWEN_WEB_BASE_URL": emu.url})
    r = httpx.get(gw.url + "/v1/models", trust_env=False)
    assert r.status_code == 200 and "qwen-web" not in {m["owned_by"] for m in r.json()["data"]}
    assert [q for q in emu.requests() if "/api/models" in q["path"]] == []
