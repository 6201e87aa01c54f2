"""The client's own cache breakpoints reach Qwen (issue 39, item 1): the `anthropic` SDK's `messages.create` and
`messages.stream`, openai-python's chat and Responses, through a real mitmdump to the emulator's Model Studio
cache (docs/emulator.md): what Qwen got (the markers, at most four, the gateway's own only where room is left
and they help), what it read and stored, and what each client saw of it in its own usage fields."""

from __future__ import annotations

import json
import time

import openai
import pytest

from helpers.home import Home
from helpers.procs import Gateway
from e2e.test_e2e_messages import PYTHON, sdk

pytestmark = pytest.mark.e2e

EPHEMERAL = {"type": "ephemeral"}
MODEL = "claude-sonnet-4-6"
LONG = "Read every file of the repository before you answer a question about it. " * 70  # ~1,300 tokens
WEATHER = {"name": "get_weather", "description": "The weather at a place", "cache_control": EPHEMERAL,
           "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}
needs_sdk = pytest.mark.skipif(not PYTHON.exists(), reason=(
    "anthropic SDK not installed (scripts/install-test-tools.sh installs it into .tools/anthropic-venv)"))


@pytest.fixture(scope="module")
def cache_gw(emulator, tmp_path_factory) -> Gateway:
    """A gateway whose only account is a DashScope key on the emulator; its debug log on (the notes)."""
    home = Home(tmp_path_factory.mktemp("cache"), emulator)
    home.key("emu", default_model="qwen3-coder-plus")
    gw = Gateway(home.root / "gw", args=("--set", "qwen_debug_log=true"), env=home.env(), connlog=True).start()
    gw.state = home.state
    yield gw
    gw.stop()


def markers(body: dict) -> list[str]:
    """Where Qwen's body carries markers: `tools.N`, `messages.N.M` (content parts), in order."""
    out = [f"tools.{i}" for i, t in enumerate(body.get("tools") or []) if "cache_control" in t]
    for j, m in enumerate(body["messages"]):
        assert "cache_control" not in m  # Qwen reads markers on content parts only
        for k, p in enumerate(m["content"] if isinstance(m["content"], list) else []):
            if "cache_control" in p:
                assert p["cache_control"] == EPHEMERAL and "prompt_cache_breakpoint" not in p, p
                out.append(f"messages.{j}.{k}")
    assert len(out) <= 4, out
    return out


def qwen_bodies(emu, since: int) -> list[dict]:
    return [r["body"] for r in emu.chat_requests()[since:]]


def notes(gw: Gateway) -> list[list[str]]:
    """The notes of every exchange the debug log wrote, oldest first."""
    files = sorted((gw.state / "logs").glob("exchange-*.json"))
    return [json.loads(f.read_text())["summary"]["notes"] for f in files]


def messages_calls(stream: bool) -> list[dict]:
    first = {"role": "user", "content": [{"type": "text", "text": LONG, "cache_control": EPHEMERAL}]}
    params = {"model": MODEL, "max_tokens": 64, "system": "You are terse.", "tools": [WEATHER]}
    op = "stream" if stream else "create"
    return [{"op": op, "params": {**params, "messages": [first]}},
            {"op": op, "params": {**params, "messages": [
                first, {"role": "assistant", "content": "Echo: read."}, {"role": "user", "content": "And now?"}]}}]


def usage(outcome: dict) -> dict:
    answer = outcome["answer"]
    return (answer["message"] if "message" in answer else answer)["usage"]


@needs_sdk
@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_anthropic_sdk_markers_reach_qwen_and_its_usage_comes_back(cache_gw, emu, stream):
    """The first user turn and a tool marked by the client: Qwen gets both (they were dropped from a whole
    request, and replaced by the gateway's own on a stream); the second turn reads the first's prefix, and the
    SDK sees Qwen's creation and reading in cache_creation_input_tokens / cache_read_input_tokens."""
    since = len(emu.chat_requests())
    out = sdk(cache_gw, "calls", {"calls": messages_calls(stream)})
    first, second = qwen_bodies(emu, since)
    assert markers(first) == ["tools.0", "messages.1.0"]  # the system prompt is short: no marker of the gateway's
    assert markers(second)[:2] == ["tools.0", "messages.1.0"] and markers(second)[-1] == "messages.3.0"
    one, two = (usage(o) for o in out["result"])
    assert one["cache_creation_input_tokens"] > 1024 and one["cache_read_input_tokens"] == 0
    assert two["cache_read_input_tokens"] == one["cache_creation_input_tokens"]
    assert two["input_tokens"] + two["cache_read_input_tokens"] + two["cache_creation_input_tokens"] > \
        one["cache_creation_input_tokens"]


@needs_sdk
def test_a_ttl_qwen_does_not_take_is_dropped_with_a_note(cache_gw, emu):
    since = len(emu.chat_requests())
    hour = {"type": "ephemeral", "ttl": "1h"}
    sdk(cache_gw, "calls", {"calls": [{"op": "create", "params": {
        "model": MODEL, "max_tokens": 64, "system": [{"type": "text", "text": LONG, "cache_control": hour}],
        "messages": [{"role": "user", "content": "hi"}]}}]})
    (body,) = qwen_bodies(emu, since)
    assert markers(body) == ["messages.0.0", "messages.1.0"]  # the client's (ttl gone), and the whole prompt
    time.sleep(1)  # the debug log writes from a thread
    assert any("cache_control ttl 1h" in n for n in notes(cache_gw)[-1]), notes(cache_gw)[-1]


def client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=30)


def test_chat_markers_within_four_client_first(cache_gw, emu):
    """Five markers from a chat client: Qwen takes the last four, so the gateway drops the earliest itself,
    and adds none of its own; two: the gateway's whole-prompt marker joins them."""
    since = len(emu.chat_requests())
    parts = [{"type": "text", "text": f"Document {i}: " + LONG, "cache_control": EPHEMERAL} for i in range(5)]
    c = client(cache_gw)
    c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": parts}])
    c.chat.completions.create(model="gpt-4o", messages=[
        {"role": "system", "content": [{"type": "text", "text": LONG, "cache_control": EPHEMERAL}]},
        {"role": "user", "content": [{"type": "text", "text": "a question",
                                      "prompt_cache_breakpoint": {"mode": "explicit"}}]},
        {"role": "assistant", "content": "an answer"}, {"role": "user", "content": "another"}])
    five, two = qwen_bodies(emu, since)
    assert markers(five) == ["messages.0.1", "messages.0.2", "messages.0.3", "messages.0.4"]
    assert markers(two) == ["messages.0.0", "messages.1.0", "messages.3.0"]


def test_chat_and_responses_whole_get_the_whole_prompt_cached(cache_gw, emu):
    """No markers from the client, not streamed: the gateway marks the long system prompt and the whole prompt
    (it marked the system prompt only), so the next turn reads the conversation; a short prompt gets no marker
    (it would turn Qwen's implicit cache off and store nothing)."""
    c = client(cache_gw)
    since = len(emu.chat_requests())
    msgs = [{"role": "system", "content": LONG}, {"role": "user", "content": "first " * 600}]
    one = c.chat.completions.create(model="gpt-4o", messages=msgs)
    two = c.chat.completions.create(model="gpt-4o", messages=[*msgs, {"role": "assistant", "content": "ok"},
                                                              {"role": "user", "content": "second"}])
    c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "short"}])
    first, second, short = qwen_bodies(emu, since)
    assert markers(first) == ["messages.0.0", "messages.1.0"] and markers(short) == []
    assert two.usage.prompt_tokens_details.cached_tokens == one.usage.prompt_tokens_details.cache_write_tokens > 1024
    r1 = c.responses.create(model="gpt-5.5", instructions=LONG, input="a Responses turn " * 200)
    r2 = c.responses.create(model="gpt-5.5", instructions=LONG, input="second", previous_response_id=r1.id)
    d1 = r1.usage.input_tokens_details
    assert d1.cached_tokens > 1024 and d1.cache_write_tokens > 0  # the system prompt the chat stored; the rest
    assert r2.usage.input_tokens_details.cached_tokens == d1.cached_tokens + d1.cache_write_tokens  # all of r1


def test_a_responses_breakpoint_reaches_qwen(cache_gw, emu):
    """openai-python's Responses `prompt_cache_breakpoint` (OpenAI's explicit breakpoint) is Qwen's marker."""
    since = len(emu.chat_requests())
    client(cache_gw).responses.create(model="gpt-5.5", input=[{"role": "user", "content": [
        {"type": "input_text", "text": LONG, "prompt_cache_breakpoint": {"mode": "explicit"}},
        {"type": "input_text", "text": "and a question"}]}])
    (body,) = qwen_bodies(emu, since)
    assert markers(body) == ["messages.0.0", "messages.0.1"]  # the client's, then the whole prompt
