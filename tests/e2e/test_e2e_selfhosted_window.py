"""Qwen on the team's own server, its window read and not met by surprise (issue 78, items 1 and 4): a vLLM server
started with a Qwen3-8B's default window (40,960 tokens, the emulator's `--serve vllm`), through a real mitmdump,
read by the real anthropic and openai SDKs.

- Claude Code asks 128,000 output tokens on every request. vLLM refuses a prompt plus cap over its window and does
  not lower the cap; the gateway used to read that refusal ("maximum context length is 40960") as a prompt too long
  and told the client `prompt is too long: ~40961 tokens > 40960` — false, and Claude Code exits. Now the window is
  read from the server's own list (`GET /v1/models`, `max_model_len`) and the cap sent is what the prompt leaves of
  it; a cap refused all the same is sent again with the server's own count.
- A prompt truly over the window reaches a Messages client as `prompt is too long: N tokens > M maximum` with the
  server's numbers (what Claude Code compacts by).
- The gateway's models are the server's: `/v1/models` lists what it serves with its window, `claude-haiku` and
  `gpt-4o` go to it, `GET /v1/models/Qwen/Qwen3-8B` answers."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import httpx
import openai
import pytest

from helpers.home import Home
from helpers.procs import Gateway, start_emulator, until
from helpers.team import ANTHROPIC_PYTHON, NO_ANTHROPIC, anthropic_calls, anthropic_driver

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

KEY = "sk-local-gpu"
MODEL = "Qwen/Qwen3-8B"
WINDOW = 40960
TOO_LONG = re.compile(r"prompt is too long: (\d+) tokens > (\d+) maximum")


@pytest.fixture(scope="module")
def vllm(tmp_path_factory):
    emu = start_emulator(tmp_path_factory.mktemp("vllm-window"), "--serve", "vllm", "--api-key", KEY,
                         "--reasoning-parser", "qwen3", "--max-model-len", str(WINDOW))
    yield emu
    emu.stop()


@pytest.fixture
def gpu(vllm):
    vllm.reset()
    yield vllm
    vllm.reset()


def gateway(tmp_path: Path, server, make_gateway, **account) -> tuple[Gateway, Path]:
    home = Home(tmp_path)
    home.selfhosted("gpu", server.url + "/v1", secret=KEY, **account)
    gw = make_gateway(env=home.env(), args=("--set", "qwen_debug_log=true"))
    state = home.state
    until(lambda: "serves Qwen/Qwen3-8B (40,960-token window)" in gw.log(), "the server's list read at start")
    return gw, state


def sent(server) -> list[dict]:
    return [r["body"] for r in server.requests() if r["path"].endswith("/chat/completions")]


def cap(body: dict) -> int:
    return body.get("max_completion_tokens") or body["max_tokens"]


def records(state: Path, count: int = 1) -> list[dict]:
    """The debug log's records, once there are `count` (each is written by a thread after its exchange ended)."""
    def read() -> list[dict]:
        found = [json.loads(p.read_text()) for p in sorted((state / "logs").glob("exchange-*.json"))]
        return found if len(found) >= count else []
    return until(read, f"{count} debug log record(s)")


@pytest.mark.skipif(not ANTHROPIC_PYTHON.exists(), reason=NO_ANTHROPIC)
def test_claude_codes_output_cap_is_fitted_to_the_servers_window(tmp_path, gpu, make_gateway):
    gw, state = gateway(tmp_path, gpu, make_gateway)
    system = "You are Claude Code, Anthropic's official CLI for Claude. " * 200  # a real agent's few thousand tokens
    (whole, streamed) = anthropic_calls(gw.url, "client-key", [
        {"op": "create", "params": {"model": "claude-sonnet-4-6", "max_tokens": 128000, "system": system,
                                    "messages": [{"role": "user", "content": "say hello"}]}},
        {"op": "stream", "params": {"model": "claude-opus-4-6", "max_tokens": 128000, "system": system,
                                    "messages": [{"role": "user", "content": "say hello"}]}}])
    assert "answer" in whole and "answer" in streamed, (whole, streamed)
    assert whole["answer"]["content"][-1]["text"] == "Echo: say hello"
    assert streamed["answer"]["text"] == "Echo: say hello"
    bodies = sent(gpu)
    assert len(bodies) == 2  # each fitted before it was sent: no refusal to learn from
    for body in bodies:
        assert body["model"] == MODEL  # Claude's tiers on a self-hosted-only pool: what the server serves
        assert 0 < cap(body) < WINDOW - 1000, body
    notes = [n for r in records(state, 2) for n in r["summary"].get("notes") or []]
    assert any("max_completion_tokens 128000 lowered to" in n and "40,960" in n for n in notes), notes


@pytest.mark.skipif(not ANTHROPIC_PYTHON.exists(), reason=NO_ANTHROPIC)
def test_a_cap_the_server_refuses_all_the_same_is_sent_again_with_its_own_count(tmp_path, gpu, make_gateway):
    """The gateway's count aims above the server's; a prompt the server counts higher (a template's tokens the
    gateway cannot see) is refused once and sent again with the server's own numbers — never `prompt is too long`."""
    gw, state = gateway(tmp_path, gpu, make_gateway)
    # punctuation: tiktoken joins runs of it into few tokens, the server's tokenizer counts each mark
    (answer,) = anthropic_calls(gw.url, "client-key", [
        {"op": "create", "params": {"model": "claude-sonnet-4-6", "max_tokens": 128000,
                                    "messages": [{"role": "user", "content": "say hello " + "." * 30000}]}}])
    assert "answer" in answer, answer
    first, again = sent(gpu)
    assert cap(again) < cap(first)
    summary = records(state)[-1]["summary"]
    assert summary["status"] == 200 and summary["retry_reasons"] == ["capped"]
    assert any("the server counts" in n and "40,960-token window" in n for n in summary["notes"])


@pytest.mark.skipif(not ANTHROPIC_PYTHON.exists(), reason=NO_ANTHROPIC)
def test_a_prompt_over_the_window_is_too_long_in_the_servers_numbers(tmp_path, gpu, make_gateway):
    gw, _ = gateway(tmp_path, gpu, make_gateway)
    calls = tmp_path / "calls.json"  # a body of megabytes is no argument
    calls.write_text(json.dumps({"calls": [{"op": "create", "params": {
        "model": "claude-sonnet-4-6", "max_tokens": 1024,
        "messages": [{"role": "user", "content": "word " * 45000}]}}]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_") and "PROXY" not in k.upper()}
    env.update(ANTHROPIC_BASE_URL=gw.url, ANTHROPIC_API_KEY="client-key")
    r = anthropic_driver(["calls", f"@{calls}"], env)
    (over,) = json.loads(r.stdout.strip().splitlines()[-1])["result"]
    assert "raised" in over, over
    said = TOO_LONG.search(over["raised"]["message"])
    assert over["raised"]["status"] == 400 and said is not None, over
    tokens, limit = map(int, said.groups())
    assert limit == WINDOW and tokens > WINDOW


def test_the_gateways_models_are_the_servers(tmp_path, gpu, make_gateway):
    gw, _ = gateway(tmp_path, gpu, make_gateway)
    with httpx.Client(base_url=gw.url, trust_env=False, timeout=30) as h:
        listed = h.get("/v1/models").json()["data"]
        chat = [m for m in listed if not m["id"].startswith(("gpt-", "o1", "o3", "o4", "claude-", "codex-",
                                                                 "text-embedding"))]
        assert [(m["id"], m.get("max_model_len")) for m in chat] == [(MODEL, WINDOW)]  # not Model Studio's 65
        one = h.get(f"/v1/models/{MODEL}")
        assert one.status_code == 200 and one.json()["id"] == MODEL and one.json()["max_model_len"] == WINDOW
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0, http_client=httpx.Client(
        trust_env=False))
    answered = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "say hello"}],
                                              reasoning_effort="none")
    assert answered.choices[0].message.content == "Echo: say hello" and sent(gpu)[-1]["model"] == MODEL


def test_a_default_model_the_server_does_not_serve_is_named_at_start(tmp_path, gpu, make_gateway):
    gw, _ = gateway(tmp_path, gpu, make_gateway, default_model="Qwen/Qwen3.6-27B")
    assert "Qwen/Qwen3.6-27B named by the account but not served by the server" in gw.log()
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0, http_client=httpx.Client(
        trust_env=False))
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                   reasoning_effort="none")
    assert sent(gpu)[-1]["model"] == MODEL  # what it serves, not a 404
