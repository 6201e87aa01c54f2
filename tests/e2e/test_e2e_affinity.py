"""A conversation stays on its account, through a real gateway (mitmdump) with three key accounts on the emulator
(Qwen's prompt cache is per account: a turn on another account pays its whole prompt again): openai-python's
chat and Responses (a previous_response_id chain), the anthropic SDK's Messages (Claude Code's session in
metadata.user_id, and a plain conversation), Codex's session, a failover that moves a conversation for good,
and two gateways that share their state on PostgreSQL (a conversation's turns alternating between them)."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import httpx
import openai
import pytest

from helpers.home import Home, accounts_in
from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from helpers.procs import ROOT, Gateway, until

pytestmark = pytest.mark.e2e

ANTHROPIC_PYTHON = ROOT / ".tools" / "anthropic-venv" / "bin" / "python"


def three_keys(tmp_path: Path, emu, name: str = "state") -> tuple[dict[str, str], dict[str, str]]:
    """Three key accounts k1, k2, k3 on the emulator's DashScope path: (the gateway's env, key -> account)."""
    home = Home(tmp_path, emu, state=tmp_path / name)
    keys = {home.key(acct, key_env=acct.upper(), default_model="qwen3-coder-plus"): acct
            for acct in (f"k{i}" for i in (1, 2, 3))}
    return home.env(), keys


def text_of(content) -> str:
    return content if isinstance(content, str) else "".join(p.get("text") or "" for p in content or [])


def served(emu, keys: dict[str, str], marker) -> dict[str, list[str]]:
    """The accounts that served each conversation's turns, in order (`marker(body)`: which conversation)."""
    out: dict[str, list[str]] = {}
    for r in emu.chat_requests():
        out.setdefault(marker(r["body"]), []).append(keys[r["headers"]["authorization"].removeprefix("Bearer ")])
    return out


def by_system(body: dict) -> str:
    return text_of(body["messages"][0]["content"])


def client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=60)


def chat_turn(c: openai.OpenAI, messages: list[dict]) -> int:
    """One streamed turn (qwen-code's shape: the last message marked for Qwen's cache); the answer appended to
    `messages`; the prompt tokens Qwen read from its cache."""
    text, cached = "", 0
    for chunk in c.chat.completions.create(model="gpt-4o", messages=messages, stream=True,
                                           stream_options={"include_usage": True}):
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage is not None:
            cached = chunk.usage.prompt_tokens_details.cached_tokens
    messages.append({"role": "assistant", "content": text})
    return cached


def test_chat_conversations_stay_on_their_account_and_read_its_cache(make_gateway, emu, tmp_path):
    env, keys = three_keys(tmp_path, emu)
    gw = make_gateway("affinity", env=env)
    c = client(gw)
    conversations = {f"conversation {n}: you review pull request {n}.": [] for n in range(4)}
    cached: list[int] = []
    for turn in range(3):  # the turns of four conversations interleaved, as concurrent sessions send them
        for system, messages in conversations.items():
            if not messages:
                messages.append({"role": "system", "content": system + " " + "context " * 400})
            messages.append({"role": "user", "content": f"turn {turn} of {system}"})
            cached.append(chat_turn(c, messages))
    accounts = served(emu, keys, lambda body: by_system(body).split(":")[0])
    assert all(len(set(a)) == 1 and len(a) == 3 for a in accounts.values()), accounts  # round-robin: 3 accounts each
    assert Counter(a[0] for a in accounts.values()) == {"k1": 2, "k2": 1, "k3": 1}  # new conversations spread
    assert cached[:4] == [0] * 4 and all(n > 400 for n in cached[4:]), cached  # every later turn read its cache
    per_account = emu.stats()["per_account"]
    assert sum(a["cache_hits"] for a in per_account.values()) == 8


def test_a_failover_moves_the_conversation_and_it_stays_on_the_new_account(make_gateway, emu, tmp_path):
    env, keys = three_keys(tmp_path, emu)
    gw = make_gateway("failover", env=env)
    c = client(gw)
    messages = [{"role": "system", "content": "failover conversation"}, {"role": "user", "content": "one"}]
    chat_turn(c, messages)
    first = served(emu, keys, by_system)["failover conversation"][0]
    key = next(k for k, a in keys.items() if a == first)
    emu.fault("hour_quota429", token=key, retry_after=1)  # its 5-hour quota, back (Qwen says) in a second
    for text in ("two", "three", "four"):
        messages.append({"role": "user", "content": text})
        chat_turn(c, messages)
        if text == "two":
            until(lambda: all(r["state"] == "ok" for r in httpx.get(gw.url + "/health", trust_env=False).json()
                              ["accounts"]), "the first account usable again")
    turns = served(emu, keys, by_system)["failover conversation"]
    assert turns[:2] == [first, first] and len(set(turns[2:])) == 1 and turns[2] != first, turns
    # the refused turn, then the new account for every later turn although the first one is usable again


def test_a_responses_chain_stays_on_its_account(make_gateway, emu, tmp_path):
    env, keys = three_keys(tmp_path, emu)
    gw = make_gateway("responses", env=env)
    c = client(gw)
    previous: dict[int, str | None] = {n: None for n in range(4)}
    for turn in range(3):
        for n in range(4):
            r = c.responses.create(model="gpt-5.5", input=f"chain {n} turn {turn}", store=True,
                                   previous_response_id=previous[n])
            previous[n] = r.id
    chains = served(emu, keys, lambda body: next(text_of(m["content"]) for m in body["messages"]
                                                 if m["role"] == "user").split(" turn")[0])
    assert all(len(set(a)) == 1 and len(a) == 3 for a in chains.values()), chains
    assert Counter(a[0] for a in chains.values()) == {"k1": 2, "k2": 1, "k3": 1}


ANTHROPIC_TURNS = """
import json, sys, anthropic
c = anthropic.Anthropic(max_retries=0)
claude_user = json.dumps({"device_id": "d" * 64, "account_uuid": "", "session_id": sys.argv[1]})
conversations = {"session": [], "plain": []}
for turn in range(3):
    for name, messages in conversations.items():
        messages.append({"role": "user", "content": f"{name} turn {turn}"})
        extra = {"metadata": {"user_id": claude_user}, "system": f"claude code session {turn}"} if name == "session" \\
            else {"system": "a plain conversation"}
        m = c.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=messages, **extra)
        messages.append({"role": "assistant", "content": m.content[0].text})
print(json.dumps({n: len(m) for n, m in conversations.items()}))
"""


@pytest.mark.skipif(not ANTHROPIC_PYTHON.exists(), reason="anthropic SDK not installed (scripts/install-test-tools.sh "
                    "installs it into .tools/anthropic-venv)")
def test_messages_conversations_stay_on_their_account(make_gateway, emu, tmp_path):
    """Claude Code names its session in metadata.user_id: its turns stay together even when their system prompt
    differs; a plain anthropic SDK conversation by its opening."""
    env, keys = three_keys(tmp_path, emu)
    gw = make_gateway("messages", env=env)
    sdk_env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_") and "proxy" not in k.lower()}
    r = subprocess.run([str(ANTHROPIC_PYTHON), "-c", ANTHROPIC_TURNS, "5d0c1a4e-0000-4000-8000-0000000000aa"],
                       env={**sdk_env, "ANTHROPIC_BASE_URL": gw.url, "ANTHROPIC_API_KEY": "sk-ant-client"},
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr[-3000:] + gw.log()[-2000:]
    assert json.loads(r.stdout) == {"session": 6, "plain": 6}
    accounts = served(emu, keys, lambda body: text_of(body["messages"][1]["content"]).split(" turn")[0])
    assert set(accounts) == {"session", "plain"} and all(len(a) == 3 for a in accounts.values())
    assert all(len(set(a)) == 1 for a in accounts.values()), accounts
    assert accounts["session"][0] != accounts["plain"][0]


def test_a_codex_session_stays_on_its_account(make_gateway, emu, tmp_path):
    from e2e.test_e2e_codex import Codex, assert_clean, custom_config

    env, keys = three_keys(tmp_path, emu)
    gw = make_gateway("codex", env=env)
    codex = Codex(tmp_path, "affinity", custom_config(gw), QWENPROXY_API_KEY="client-key")
    for prompt, resume in (("say one", False), ("say two", True), ("say three", True)):
        client(gw).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": prompt}])  # another
        log, _ = codex.run(prompt, resume=resume)  # conversation in between: the round-robin moves on
        assert_clean(log)
    codex_turns = [keys[r["headers"]["authorization"].removeprefix("Bearer ")] for r in emu.chat_requests()
                   if r["body"].get("tools")]  # Codex offers its tools; the requests in between none
    assert len(codex_turns) == 3 and len(set(codex_turns)) == 1, codex_turns


def test_two_gateways_on_postgresql_keep_a_conversation_on_one_account(tmp_path, emu, pg_url, pg_server):  # noqa: F811
    """Behind a load balancer a conversation's turns alternate between gateways: both send them to the account
    the conversation started on. The database stopped: each gateway goes on from memory."""
    env, keys = three_keys(tmp_path, emu)
    gws = [Gateway(tmp_path / name, env={**env, "QWEN_GATEWAY_HOME": str(tmp_path / f"state-{name}")},
                   args=("--set", f"qwen_state_url={pg_url}")) for name in ("one", "two")]
    for name in ("one", "two"):
        Home(tmp_path, state=tmp_path / f"state-{name}").account(*accounts_in(tmp_path / "state")).write()
    try:
        for gw in gws:
            gw.start()
        clients = [client(gw) for gw in gws]
        conversations = [[{"role": "system", "content": f"shared conversation {n}"}] for n in range(4)]
        for turn in range(4):  # turn 0 on gateway one in order; turn 1 on gateway two in the reverse order; ...
            order = conversations if turn % 2 == 0 else conversations[::-1]
            for messages in order:
                messages.append({"role": "user", "content": f"turn {turn}"})
                chat_turn(clients[turn % 2], messages)
            if turn == 0:
                until(lambda: shared_rows(pg_url) == 4, "the four conversations in the shared table")
        accounts = served(emu, keys, by_system)
        assert all(len(set(a)) == 1 and len(a) == 4 for a in accounts.values()), accounts
        pg_server.halt()
        for messages in conversations:
            messages.append({"role": "user", "content": "while the database is away"})
            chat_turn(clients[0], messages)
        after = served(emu, keys, by_system)
        assert all(len(set(a)) == 1 and len(a) == 5 for a in after.values()), after
    finally:
        pg_server.resume()
        for gw in gws:
            gw.stop()


def shared_rows(url: str) -> int:
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM conversation_account").fetchone()[0]
    except psycopg.errors.UndefinedTable:
        return 0
