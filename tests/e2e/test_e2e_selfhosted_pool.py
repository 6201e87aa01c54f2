"""A pool of the team's own servers (issue 78, item 5), through a real mitmdump: three 2026 vLLM servers serving the
same model — one as it should be, one slowed (every token 20 ms), one whose engine died (`/health` 503, chat 500) —
carry eight two-turn conversations. Each conversation's turns go to one server (where its prefix is cached), none
to the dead one (its `/health`, read in the background, says so; a request that reaches it all the same is sent on);
the slow server keeps serving (slow is not dead). A server that stops answering mid-session loses its conversations
to the others, and the client never sees it."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from helpers.home import CODING_PLAN, Home
from helpers.procs import Gateway, start_emulator, until
from helpers.team import ANTHROPIC_PYTHON, NO_ANTHROPIC, anthropic_calls

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

KEY = "sk-team"
MODEL = "Qwen/Qwen3-8B"


@pytest.fixture
def servers(tmp_path):
    started = {}
    for name, extra in (("fast", ()), ("slow", ("--token-delay", "0.02")), ("dead", ())):
        (tmp_path / name).mkdir()
        started[name] = start_emulator(tmp_path / name, "--serve", "vllm", "--vllm-version", "0.20.0", "--api-key",
                                       KEY, "--model", MODEL, *extra)
    yield started
    for emu in started.values():
        emu.stop()


def gateway(tmp_path: Path, servers: dict, make_gateway) -> Gateway:
    home = Home(tmp_path)
    for name, emu in servers.items():
        home.selfhosted(f"gpu-{name}", emu.url + "/v1", key_env="GPU_KEY", secret=KEY)
    return make_gateway(env=home.env())


def chats(emu) -> list[dict]:
    return [r["body"] for r in emu.requests() if r["path"].endswith("/chat/completions")]


def conversation_of(body: dict) -> str:
    return body["messages"][0]["content"]


def test_eight_conversations_keep_their_server_and_none_goes_to_the_dead_one(tmp_path, servers, make_gateway):
    servers["dead"].admin("POST", "engine", {"dead": True})
    gw = gateway(tmp_path, servers, make_gateway)
    until(lambda: "account gpu-dead: its server is down (/health answered 503)" in gw.log(), "the dead server seen")
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0, timeout=60,
                           http_client=httpx.Client(trust_env=False))
    for turn in range(2):
        for n in range(8):
            messages = [{"role": "system", "content": f"You are agent {n}."}, {"role": "user", "content": "hi"}]
            if turn:
                messages += [{"role": "assistant", "content": "Echo: hi"}, {"role": "user", "content": "again"}]
            answer = client.chat.completions.create(model="gpt-4o", messages=messages, reasoning_effort="none")
            assert answer.choices[0].message.content.startswith("Echo:")
    assert chats(servers["dead"]) == []
    held = {name: {conversation_of(b) for b in chats(servers[name])} for name in ("fast", "slow")}
    assert held["fast"] | held["slow"] == {f"You are agent {n}." for n in range(8)}
    assert not held["fast"] & held["slow"], held  # each conversation on one server, both turns
    assert held["slow"], "the slow server got no conversation: slow is not dead"
    for name in ("fast", "slow"):
        turns = [conversation_of(b) for b in chats(servers[name])]
        assert all(turns.count(c) == 2 for c in set(turns)), turns


def test_a_server_that_stops_answering_loses_its_conversations_to_the_others(tmp_path, servers, make_gateway):
    gw = gateway(tmp_path, servers, make_gateway)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0, timeout=60,
                           http_client=httpx.Client(trust_env=False))
    opening = [{"role": "system", "content": "You are agent x."}, {"role": "user", "content": "hi"}]
    client.chat.completions.create(model="gpt-4o", messages=opening, reasoning_effort="none")
    home = next(name for name, emu in servers.items() if chats(emu))
    servers[home].stop()  # gone between two turns: connections refused
    again = client.chat.completions.create(model="gpt-4o", reasoning_effort="none", messages=[
        *opening, {"role": "assistant", "content": "Echo: hi"}, {"role": "user", "content": "again"}])
    assert again.choices[0].message.content == "Echo: again"  # the client never saw the server go
    elsewhere = [name for name, emu in servers.items() if name != home and emu.proc.poll() is None and chats(emu)]
    assert elsewhere, "the second turn went nowhere"


@pytest.mark.skipif(not ANTHROPIC_PYTHON.exists(), reason=NO_ANTHROPIC)
def test_a_mixed_pools_binding_holds(tmp_path, make_gateway):
    """A Model Studio key beside a self-hosted server: without a binding `gpt-4o` and Claude sessions would go to
    either; bound, every Claude name stays on the team's server and every OpenAI request on Model Studio."""
    (tmp_path / "ms").mkdir()
    (tmp_path / "gpu").mkdir()
    studio = start_emulator(tmp_path / "ms", "--api-key", "sk-ms")
    gpu = start_emulator(tmp_path / "gpu", "--serve", "vllm", "--vllm-version", "0.20.0", "--api-key", KEY,
                         "--model", MODEL)
    try:
        home = Home(tmp_path, studio)
        home.key("ms", path=CODING_PLAN, secret="sk-ms", default_model="qwen3-coder-plus")
        home.selfhosted("gpu", gpu.url + "/v1", secret=KEY)
        gw = make_gateway(env=home.env(),
                          args=("--set", "qwen_account_bindings=model:claude-*=provider:selfhosted",
                                "--set", "qwen_account_bindings=dialect:openai=ms"))
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0, timeout=60,
                               http_client=httpx.Client(trust_env=False))
        for n in range(4):
            client.chat.completions.create(model="gpt-4o", messages=[
                {"role": "system", "content": f"openai {n}"}, {"role": "user", "content": "hi"}])
        answers = anthropic_calls(gw.url, "client-key", [
            {"op": "create", "params": {"model": model, "max_tokens": 1000, "system": f"claude {n}",
                                        "messages": [{"role": "user", "content": "hi"}]}}
            for n, model in enumerate(["claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-6", "claude-sonnet-4-6"])])
        assert all("answer" in a for a in answers), answers
        assert {conversation_of(b) for b in chats(studio)} == {f"openai {n}" for n in range(4)}
        assert {conversation_of(b) for b in chats(gpu)} == {f"claude {n}" for n in range(4)}
        assert all(b["model"] == MODEL for b in chats(gpu))  # Claude's tiers: what the server serves
    finally:
        studio.stop()
        gpu.stop()
