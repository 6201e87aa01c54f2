"""The team gateway on one gateway (SQLite state folder): named keys made with the real `qwen-keys`, a real
mitmdump, openai-python and the anthropic SDK. The entrance (401 in each client's dialect, nothing upstream), a
running gateway seeing new, revoked and rotated keys, rate limits under concurrency, budgets, and the keys
file working alongside. Money, metrics and the places spend is shown: test_e2e_keys_spend.py; two gateways
on one PostgreSQL: test_e2e_keys_shared.py."""

from __future__ import annotations

import concurrent.futures
import json
import sqlite3

import httpx
import openai
import pytest

from helpers.team import (MESSAGE, NO_ANTHROPIC, ANTHROPIC_PYTHON, add_key, anthropic_calls, openai_client, qwen_keys,
                          team_env, until)

pytestmark = pytest.mark.e2e
HI = [{"role": "user", "content": "hi"}]


def chat(url: str, key: str, content: str = "hi", **kw):
    return openai_client(url, key).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": content}],
                                                           **kw)


def refused_with(url: str, key: str) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as e:
        chat(url, key)
    return e.value


def test_once_a_named_key_exists_every_request_needs_one(tmp_path, emu, make_gateway):
    env = team_env(tmp_path, emu)
    gw = make_gateway(env=env)
    assert chat(gw.url, "anything").choices[0].message.content == "Echo: hi"  # no keys: loopback, open
    alice = add_key(env, "alice")
    # the running gateway sees the new key (it polls its keys file every second)
    until(lambda: isinstance(_status(gw.url, "anything"), int) and _status(gw.url, "anything") == 401,
          "the new key taking effect", limit=5)
    before = len(emu.chat_requests())
    for key in ("", "sk-qg-not-a-key", alice[:-1]):
        err = refused_with(gw.url, key or "x")
        assert isinstance(err, openai.AuthenticationError) and err.code == "invalid_api_key"
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "gpt-4o", "messages": HI}, trust_env=False)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"  # no key at all
    assert len(emu.chat_requests()) == before  # nothing went upstream
    assert chat(gw.url, alice).choices[0].message.content == "Echo: hi"
    r = httpx.post(gw.url + "/v1/chat/completions", headers={"x-api-key": alice}, trust_env=False,
                   json={"model": "gpt-4o", "messages": HI})
    assert r.status_code == 200
    assert alice not in json.dumps(emu.requests())  # client keys never go upstream

    qwen_keys(env, "revoke", "alice")
    until(lambda: _status(gw.url, alice) == 401, "the revocation taking effect", limit=5)
    err = refused_with(gw.url, alice)
    assert "revoked" in err.message and err.code == "invalid_api_key"
    new = qwen_keys(env, "rotate", "alice").stdout.strip().splitlines()[-1]
    until(lambda: _status(gw.url, new) == 200, "the rotated key taking effect", limit=5)
    assert _status(gw.url, alice) == 401  # the old key is gone


def _status(url: str, key: str) -> int:
    return httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, trust_env=False,
                      json={"model": "gpt-4o", "messages": HI}, timeout=30).status_code


@pytest.mark.skipif(not ANTHROPIC_PYTHON.exists(), reason=NO_ANTHROPIC)
def test_anthropic_clients_get_the_refusals_in_their_own_shape(tmp_path, emu, make_gateway):
    env = team_env(tmp_path, emu)
    key = add_key(env, "claude", "--rpm", "1")
    gw = make_gateway(env=env)
    before = len(emu.client_requests())
    unknown, first, second = (anthropic_calls(gw.url, k, [{"op": "create", "params": MESSAGE}])[0]
                              for k in ("sk-ant-unknown", key, key))
    assert unknown["raised"]["class"] == "AuthenticationError" and unknown["raised"]["status"] == 401
    assert unknown["raised"]["body"]["type"] == "error"
    assert unknown["raised"]["body"]["error"]["type"] == "authentication_error"
    assert first["answer"]["content"][0]["text"] == "Echo: hi"
    limited = second["raised"]
    assert limited["class"] == "RateLimitError" and limited["body"]["error"]["type"] == "rate_limit_error"
    assert "'claude'" in limited["message"] and "1 request per minute" in limited["message"]
    assert 1 <= int(limited["retry_after"]) <= 62
    assert len(emu.client_requests()) == before + 1  # only the admitted one went upstream
    budget = add_key(env, "claude-daily", "--daily-tokens", "1")
    until(lambda: _status(gw.url, budget) == 200, "the new key", limit=5)  # spends more than 1 token
    spent = anthropic_calls(gw.url, budget, [{"op": "create", "params": MESSAGE}])[0]["raised"]
    # as Anthropic answers a reached spend limit (test_e2e_keys_headers.py): a 400, never a day-long 429
    assert spent["class"] == "BadRequestError" and spent["body"]["error"]["type"] == "invalid_request_error"
    assert "You have reached your specified API usage limits" in spent["message"] and spent["retry_after"] is None


def test_twenty_concurrent_requests_on_a_key_with_rpm_5_get_exactly_5_answers(tmp_path, emu, make_gateway):
    env = team_env(tmp_path, emu)
    key = add_key(env, "burst", "--rpm", "5")
    gw = make_gateway(env=env)
    before = len(emu.chat_requests())

    def one(i: int):
        try:
            return chat(gw.url, key, f"request {i}")
        except openai.APIStatusError as e:
            return e

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, range(20)))
    answered = [r for r in results if not isinstance(r, Exception)]
    limited = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert len(answered) == 5 and len(limited) == 15, results
    assert len(emu.chat_requests()) == before + 5
    for e in limited:
        assert e.code == "rate_limit_exceeded" and e.body["type"] == "requests"
        assert 1 <= int(e.response.headers["retry-after"]) <= 60
    # refusals are counted: in the ledger (as 429s with the key's name) and in qwen-keys list
    # (the answers' rows are written after their replies: both counts are waited for)
    until(lambda: [r for r in json.loads(qwen_keys(env, "list", "--json").stdout)
                   if r["refused_today"] == 15 and r["requests_today"] == 5], "the counts in qwen-keys list",
          limit=10)


def test_tpm_reserves_an_estimate_and_counts_what_qwen_reported(tmp_path, emu, make_gateway):
    env = team_env(tmp_path, emu)
    key = add_key(env, "tokens", "--tpm", "300")
    gw = make_gateway(env=env)
    long = "word " * 150  # the emulator counts ~150 prompt tokens, and echoes them back
    answer = chat(gw.url, key, long)
    assert answer.usage.total_tokens > 300 // 2
    with pytest.raises(openai.RateLimitError) as e:
        chat(gw.url, key, long)
    assert e.value.body["type"] == "tokens" and "300 tokens per minute" in e.value.message
    assert 1 <= int(e.value.response.headers["retry-after"]) <= 60
    with pytest.raises(openai.RateLimitError) as e:  # larger than the limit itself: never admitted
        chat(gw.url, key, "word " * 2000)
    assert "can never be admitted" in e.value.message and e.value.response.headers["x-should-retry"] == "false"


def test_a_daily_token_budget_refuses_the_next_request_and_says_when_it_resets(tmp_path, emu, make_gateway):
    env = team_env(tmp_path, emu)
    key = add_key(env, "daily", "--daily-tokens", "20")
    gw = make_gateway(env=env)
    # a stream that passes its budget mid-way finishes (budgets count what Qwen reported, once complete)
    stream = chat(gw.url, key, "tell me a long story " * 5, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[-1].usage.total_tokens > 20
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("Echo: tell me")
    before = len(emu.chat_requests())
    with pytest.raises(openai.RateLimitError) as e:
        chat(gw.url, key)
    err = e.value
    assert err.code == "insufficient_quota" and err.body["type"] == "insufficient_quota"
    assert "daily budget" in err.message and "of 20 tokens today" in err.message
    assert "resets at 00:00 UTC" in err.message
    assert err.response.headers["x-should-retry"] == "false"
    assert "retry-after" not in err.response.headers  # hours away: beyond any window a client would wait out
    assert len(emu.chat_requests()) == before
    # a restarted gateway still knows what the key spent today
    gw.stop()
    gw.start()
    assert _status(gw.url, key) == 429


def test_the_keys_file_keeps_working_alongside_named_keys(tmp_path, emu, make_gateway):
    env = {**team_env(tmp_path, emu), "QWEN_GATEWAY_KEYS": "flat-key-1"}
    named = add_key(env, "named")
    gw = make_gateway(env=env)
    assert _status(gw.url, "flat-key-1") == 200
    assert _status(gw.url, named) == 200
    assert _status(gw.url, "flat-key-2") == 401


def test_keys_are_stored_hashed_and_never_shown(tmp_path, emu, make_gateway):
    env = team_env(tmp_path, emu)
    key = add_key(env, "secret", "--rpm", "100")
    flows = tmp_path / "flows.mitm"
    gw = make_gateway(env=env, args=("-w", str(flows)))
    assert _status(gw.url, key) == 200
    listed = qwen_keys(env, "list").stdout + qwen_keys(env, "list", "--json").stdout
    state = tmp_path / "team" / "state"
    until(lambda: (state / "usage.sqlite3").exists(), "the ledger")
    gw.stop()
    stored = b"".join(p.read_bytes() for p in state.iterdir() if p.is_file())
    assert key.encode() not in stored and key.encode() not in flows.read_bytes()
    assert key not in gw.log() and key not in listed
    db = sqlite3.connect(state / "keys.sqlite3")
    assert [r[0] for r in db.execute("SELECT name FROM client_keys")] == ["secret"]
    assert (state / "keys.sqlite3").stat().st_mode & 0o777 == 0o600
