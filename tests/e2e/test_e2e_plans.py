"""A Coding Plan key refuses clients it does not count as coding agents (HTTP 405 "Coding Plan is currently only
available for Coding Agents", users since 2026-03: aaif-goose/goose#8005, iOfficeAI/AionUi#2555), through a real
mitmdump and the emulator's `coding_plan_agents_only`, with the real openai SDK unchanged: the SDK reads a
permission refusal (403 `plan_refused`) that says what to use instead, another account of the pool serves the
request when there is one, a coding agent is served by the plan, and the plan's account stays `ok`. Upstream,
a key account's request says who the client is (its own User-Agent), never qwen-code's identity."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest

from helpers.home import CODING_PLAN, PAYG, Home
from helpers.procs import until

pytestmark = pytest.mark.e2e
HI = [{"role": "user", "content": "hi"}]
CLAUDE_CODE = "claude-cli/2.0.0 (external, cli)"  # as Claude Code sends it
QWEN_CODE_ONLY = ("x-dashscope-useragent", "x-dashscope-authtype")


def plan_gateway(tmp_path: Path, emu, make_gateway, *, payg: bool = False):
    """A gateway whose first account is a Coding Plan key (the emulator's `/v1`, as coding-intl's base is
    emulated); with `payg`, a pay-as-you-go key after it (`/compatible-mode/v1`, which the plan's rule never
    touches). Its debug log on: the exchanges' notes."""
    home = Home(tmp_path, emu)
    home.key("cp", path=CODING_PLAN, default_model="qwen3-coder-plus")
    if payg:
        home.key("ds", path=PAYG, default_model="qwen3-coder-plus")
    emu.switches(coding_plan_agents_only=True)
    gw = make_gateway(env=home.env(), args=("--set", "qwen_debug_log=true"))
    return gw, home.state


def client(gw, **headers) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=30,
                         default_headers=headers or None, http_client=httpx.Client(trust_env=False))


def states(gw) -> dict[str, str]:
    return {a["name"]: a["state"] for a in httpx.get(gw.url + "/health", trust_env=False).json()["accounts"]}


def notes(state: Path) -> list[str]:
    """The notes of the exchanges the debug log wrote (it writes them just after the answer)."""
    files = until(lambda: sorted((state / "logs").glob("exchange-*.json")), "the debug log")
    return [n for f in files for n in json.loads(f.read_text())["summary"]["notes"]]


def test_a_script_on_a_plan_key_reads_a_permission_refusal_and_a_coding_agent_is_served(tmp_path, emu, make_gateway):
    gw, _ = plan_gateway(tmp_path, emu, make_gateway)
    with pytest.raises(openai.PermissionDeniedError) as e:
        client(gw).chat.completions.create(model="gpt-4o", messages=HI)
    assert e.value.status_code == 403 and e.value.code == "plan_refused"
    assert "Account cp:" in e.value.message and "coding agents only" in e.value.message
    assert "qwen-auth add-key NAME --preset dashscope-intl" in e.value.message
    assert states(gw) == {"cp": "ok"}  # the plan serves the clients it accepts: not broken, not cooling down

    answer = client(gw, **{"User-Agent": CLAUDE_CODE}).chat.completions.create(model="gpt-4o", messages=HI)
    assert answer.choices[0].message.content == "Echo: hi"
    refused, served = emu.chat_requests()
    assert refused["path"] == served["path"] == "/v1/chat/completions"
    assert refused["headers"]["user-agent"].startswith("OpenAI/Python ")  # the SDK's own, as it sent it
    assert served["headers"]["user-agent"] == CLAUDE_CODE
    for sent in (refused, served):  # the SDK sent its X-Stainless-* headers to the gateway: none go upstream
        assert not [h for h in sent["headers"] if h.startswith("x-stainless") or h in QWEN_CODE_ONLY], sent["headers"]
        assert sent["headers"]["x-dashscope-cachecontrol"] == "enable"
    assert states(gw) == {"cp": "ok"}


def test_a_refused_client_is_served_by_the_next_account_and_the_flow_says_why(tmp_path, emu, make_gateway):
    gw, state = plan_gateway(tmp_path, emu, make_gateway, payg=True)
    answer = client(gw).chat.completions.create(model="gpt-4o", messages=HI)
    assert answer.choices[0].message.content == "Echo: hi"
    assert [r["path"] for r in emu.chat_requests()] == ["/v1/chat/completions", "/compatible-mode/v1/chat/completions"]
    said = notes(state)
    assert any(n.startswith("cp refused this client") and "coding agents only" in n for n in said), said
    assert states(gw) == {"cp": "ok", "ds": "ok"}


def test_a_responses_websocket_turn_carries_its_upgrades_user_agent(tmp_path, emu, make_gateway):
    """Codex's turns over the Responses WebSocket: each is its own exchange, made from the upgrade's request."""
    import websocket

    codex = "codex_cli_rs/0.80.0 (Ubuntu 24.4.0; x86_64) xterm-256color"
    gw, _ = plan_gateway(tmp_path, emu, make_gateway)
    ws = websocket.create_connection(gw.url.replace("http://", "ws://") + "/v1/responses", timeout=15, header=[
        "Authorization: Bearer client-key", "openai-beta: responses_websockets=2026-02-06", f"User-Agent: {codex}"])
    try:
        ws.send(json.dumps({"type": "response.create", "model": "gpt-5", "store": False, "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]}))
        while (event := json.loads(ws.recv()))["type"] not in ("response.completed", "response.failed", "error"):
            pass
    finally:
        ws.close()
    assert event["type"] == "response.completed", event
    (sent,) = emu.chat_requests()
    assert sent["headers"]["user-agent"] == codex
