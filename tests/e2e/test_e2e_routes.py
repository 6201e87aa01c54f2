"""Routes by what a request needs (`qwen_routes`) end to end: a real mitmdump with the addon, the strict emulator
(each model's context window is the catalogue's, images only to vision models) and real clients: openai-python,
named keys made with the real `qwen-keys`, and the real Claude Code asking its haiku tier. Each route shows on
the request line and on the flow (its comment and the record, read from a `-w` flow file)."""

from __future__ import annotations

import json

import openai
import pytest
from mitmproxy import io

from helpers.claude_ns import claude_world, stream_json  # noqa: F401  (fixtures)
from helpers.team import add_key, openai_client, team_env, until

pytestmark = pytest.mark.e2e

# 280,001 of the emulator's tokens (a quarter of the characters): over qwen3-max's 258,048, within qwen4-max's
LONG_PROMPT = "1234567 " * 140_000
IMAGE = "https://example.com/cat.png"


def gateway(make_gateway, tmp_path, emu, name: str, *options: str):
    """A gateway with one key account on the emulator (default model qwen3-coder-plus), gpt-4o mapped to
    qwen3-max for every account, these options, and its flows written to a file."""
    env = team_env(tmp_path, emu, name)
    flows = tmp_path / f"{name}.flows"
    args = ("--set", "qwen_model_map=gpt-4o=qwen3-max", "-w", str(flows), *(a for o in options for a in ("--set", o)))
    return make_gateway(f"{name}-gw", env=env, args=args), env, flows


def line_of(gw, needle: str) -> str:
    return until(lambda: [ln for ln in gw.log().splitlines() if needle in ln], f"a request line with {needle}")[-1]


def recorded(gw, flows) -> list:
    gw.stop()  # the flow file is complete once mitmdump has ended
    with open(flows, "rb") as f:
        return [fl for fl in io.FlowReader(f).stream() if fl.request.path.startswith("/v1/")]


def test_a_long_prompt_goes_to_the_long_context_model(tmp_path, emu, make_gateway):
    """qwen3-max takes 258,048 prompt tokens (the catalogue); Qwen refuses more. The default route sends the
    prompt to the family's long-context sibling, qwen4-max; with the route off, the gateway answers the context
    error itself rather than upload what Qwen refuses (issue 59)."""
    off, _, _ = gateway(make_gateway, tmp_path, emu, "off", "qwen_routes=long-context=off")
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client(off.url, "x").chat.completions.create(model="gpt-4o",
                                                            messages=[{"role": "user", "content": LONG_PROMPT}])
    assert "258048" in str(refused.value.message) and refused.value.code == "context_length_exceeded"
    assert emu.chat_requests() == []

    gw, _, flows = gateway(make_gateway, tmp_path, emu, "on")  # nothing set: the defaults
    answer = openai_client(gw.url, "x").chat.completions.create(model="gpt-4o",
                                                                messages=[{"role": "user", "content": LONG_PROMPT}])
    assert answer.choices[0].finish_reason == "stop" and answer.model == "gpt-4o"
    assert emu.chat_requests()[-1]["body"]["model"] == "qwen4-max"
    line = line_of(gw, "(route: long-context)")
    assert "POST /v1/chat/completions gpt-4o→qwen4-max (route: long-context) acct=emu 200" in line
    (flow,) = recorded(gw, flows)
    assert flow.comment.startswith("gpt-4o → qwen4-max (route: long-context) · acct emu · 200")
    assert "route long-context (long-context=sibling): about " in flow.comment and "qwen3-max's window" in flow.comment
    assert flow.metadata["qwen"]["routed"] == {"reason": "long-context", "model": "qwen4-max",
                                               "rule": "long-context=sibling"}


def test_an_image_goes_to_the_vision_model_and_a_rule_can_name_another(tmp_path, emu, make_gateway):
    gw, env, flows = gateway(make_gateway, tmp_path, emu, "img", "qwen_routes=images@agent:curl=qwen3-vl-plus")
    msgs = [{"role": "user", "content": [{"type": "text", "text": "what is it?"},
                                         {"type": "image_url", "image_url": {"url": IMAGE}}]}]
    c = openai_client(gw.url, "x")
    assert c.chat.completions.create(model="gpt-4.1", messages=msgs).choices[0].message.content == "Echo: what is it?"
    body = emu.chat_requests()[-1]["body"]
    assert body["model"] == "qwen3.6-plus" and body["vl_high_resolution_images"] is True  # the account's, as ever
    assert "gpt-4.1→qwen3.6-plus (route: images) acct=emu 200" in line_of(gw, "(route: images)")
    curl = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, default_headers={"User-Agent": "curl/8"})
    curl.chat.completions.create(model="gpt-4.1", messages=msgs)
    assert emu.chat_requests()[-1]["body"]["model"] == "qwen3-vl-plus"  # the rule for that client
    c.chat.completions.create(model="qwen3-vl-plus", messages=msgs)  # a model that sees: not routed
    assert emu.chat_requests()[-1]["body"]["model"] == "qwen3-vl-plus"
    first, second, third = recorded(gw, flows)
    assert first.comment.startswith("gpt-4.1 → qwen3.6-plus (route: images)")
    assert "images sent to qwen3.6-plus: qwen3-coder-plus cannot read images (route: images=vision)" in first.comment
    assert second.metadata["qwen"]["routed"]["rule"] == "images@agent:curl=qwen3-vl-plus"
    assert "(route:" not in third.comment and "routed" not in third.metadata["qwen"]


def test_a_rule_for_one_named_key(tmp_path, emu, make_gateway):
    """`fast@key:ci=qwen3.6-flash`: the ci key's mini requests go to the flash model; alice's go as they always did."""
    gw, env, flows = gateway(make_gateway, tmp_path, emu, "keys", "qwen_routes=fast@key:ci=qwen3.6-flash")
    ci, alice = add_key(env, "ci"), add_key(env, "alice")
    hi = [{"role": "user", "content": "hi"}]
    until(lambda: not _works(gw.url, "sk-qg-not-a-key") and _works(gw.url, ci) and _works(gw.url, alice),
          "the new keys taking effect", limit=10)
    openai_client(gw.url, ci).chat.completions.create(model="gpt-4o-mini", messages=hi)
    assert emu.chat_requests()[-1]["body"]["model"] == "qwen3.6-flash"
    openai_client(gw.url, alice).chat.completions.create(model="gpt-4o-mini", messages=hi)
    assert emu.chat_requests()[-1]["body"]["model"] == "qwen3-coder-plus"  # the account's default: no route
    line = line_of(gw, "acct=emu key=ci ")
    assert "gpt-4o-mini→qwen3.6-flash (route: fast) acct=emu key=ci 200" in line
    assert "(route:" not in line_of(gw, "acct=emu key=alice ")
    kept = [f for f in recorded(gw, flows) if f.metadata["qwen"].get("key") == "ci" and f.metadata["qwen"].get("routed")]
    assert kept and kept[-1].metadata["qwen"]["routed"] == {"reason": "fast", "model": "qwen3.6-flash",
                                                            "rule": "fast@key:ci=qwen3.6-flash"}
    assert ci.encode() not in flows.read_bytes() and alice.encode() not in flows.read_bytes()


def _works(url: str, key: str) -> bool:
    try:
        openai_client(url, key).models.list()
        return True
    except openai.APIStatusError:
        return False


def test_claude_codes_haiku_tier_goes_to_the_flash_model(claude_world):  # noqa: F811
    """The real Claude Code asked for its haiku tier (`--model haiku`): a rule for Claude Code's User-Agent sends
    it to the flash model (without a rule, the haiku alias's qwen3-coder-flash, as before)."""
    gw = claude_world.recording_gateway("haiku", "reverse:https://portal.qwen.ai",
                                        "--set", "qwen_routes=fast@agent:claude-cli=qwen3.6-flash")
    try:
        claude_world.reset_emulator()
        env = {"ANTHROPIC_BASE_URL": gw.proxy_url, "ANTHROPIC_API_KEY": "sk-ant-never-forwarded",
               "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
        r, _, _ = claude_world.claude("say hello", "--model", "haiku", "--output-format", "stream-json", "--verbose",
                                      env=env)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:] + gw.log()[-2000:]
        assert stream_json(r)[-1]["result"] == "Echo: say hello"
        (sent,) = claude_world.chat_requests()
        assert sent["body"]["model"] == "qwen3.6-flash"
        line = until(lambda: [ln for ln in gw.log().splitlines() if "(route: fast)" in ln], "the request line")[-1]
        assert "POST /v1/messages" in line and " claude-haiku-" in line and "→qwen3.6-flash (route: fast)" in line
        (record,) = [e for e in claude_world.exchanges({"logs": set()}, 1) if "routed" in json.dumps(e)]
        assert '"rule": "fast@agent:claude-cli=qwen3.6-flash"' in json.dumps(record)
    finally:
        gw.stop()


def test_a_route_and_a_map_to_a_model_newer_than_the_catalogue_start_with_a_warning(tmp_path, emu, make_gateway):
    """issue 82: `fast=qwen4-flash` (a model Qwen serves that the catalogue does not name yet) stopped the gateway
    at start. It starts, says once that the model is unknown to the catalogue, and sends it as asked; its price is
    unknown (unpriced), never $0."""
    emu.switches(extra_models=["qwen4-flash"])
    gw, _, _ = gateway(make_gateway, tmp_path, emu, "newer", "qwen_routes=fast=qwen4-flash",
                       "qwen_model_map=gpt-4.1=qwen4-flash")
    warned = [ln for ln in gw.log().splitlines() if "is not in the catalogue" in ln]
    assert len(warned) == 1 and "qwen_routes: 'fast=qwen4-flash'" in warned[0], gw.log()
    hi = [{"role": "user", "content": "hi"}]
    for model in ("gpt-4o-mini", "gpt-4.1"):
        assert openai_client(gw.url, "x").chat.completions.create(model=model, messages=hi).choices
        assert emu.chat_requests()[-1]["body"]["model"] == "qwen4-flash"
    assert "gpt-4o-mini→qwen4-flash (route: fast) acct=emu 200" in line_of(gw, "(route: fast)")
    assert "cost=$0 " not in gw.log() and "cost=unpriced" in line_of(gw, "gpt-4.1→qwen4-flash")
