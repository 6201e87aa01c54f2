"""A named key's life on a real gateway, from the gateway's side: the start-up lines and /health say that named
keys are active (how many, active and revoked); a keyring of revoked keys only still needs a key and says so;
`qwen-keys delete` removes a key for good (its record and spend, not its ledger rows) and the last one
deleted makes the gateway keyless again, in one log line; the 401 for a missing key says how to get one
(and, on the gateway's machine, that `qwen-keys list` shows them). On one state folder here; on PostgreSQL
(delete announced by NOTIFY): test_e2e_keys_shared.py."""

from __future__ import annotations

import contextlib

import json
import sqlite3

import httpx
import openai
import pytest

from helpers.ledger import ledger_rows
from helpers.team import (ANTHROPIC_PYTHON, MESSAGE, NO_ANTHROPIC, add_key, anthropic_calls, openai_client,
                          qwen_keys, team_env, until)

pytestmark = pytest.mark.e2e
HI = [{"role": "user", "content": "hi"}]
KEYLESS = "no named client key is left"


def status(gw, key: str | None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(gw.url + "/v1/chat/completions", headers=headers, trust_env=False,
                      json={"model": "gpt-4o", "messages": HI}, timeout=30).status_code


def health_keys(gw) -> dict:
    return httpx.get(gw.url + "/health", trust_env=False, timeout=30).json().get("keys", {})


def test_a_key_deleted_is_gone_for_good_and_the_last_one_makes_the_gateway_keyless_again(tmp_path, emu, make_gateway):
    env = team_env(tmp_path, emu)
    alice = add_key(env, "alice", "--daily-tokens", "100000")
    bob = add_key(env, "bob")
    gw = make_gateway(env=env)
    # the start-up lines and /health say that named keys are active, and how many
    assert "named client keys: 2 active, 0 revoked: every request needs a key" in gw.log()
    assert health_keys(gw) == {"active": 2, "revoked": 0, "state": "read"}
    assert status(gw, alice) == 200 and status(gw, bob) == 200 and status(gw, None) == 401
    state = tmp_path / "team" / "state"

    def spent() -> list[str]:
        with contextlib.closing(sqlite3.connect(state / "keys.sqlite3")) as db:
            return [r[0] for r in db.execute("SELECT DISTINCT name FROM key_day ORDER BY name")]
    # their spend written (once a second) before the changes: the delete must find alice's to remove (the
    # changes reach the gateway at once, faster than that batch)
    until(lambda: spent() == ["alice", "bob"], "the spend written")

    qwen_keys(env, "revoke", "alice")
    qwen_keys(env, "revoke", "bob")
    # revoked keys only: still a key on every request (none is valid), said in the log and /health
    until(lambda: health_keys(gw) == {"active": 0, "revoked": 2, "state": "read"}, "the revocations", limit=5)
    assert [status(gw, k) for k in (alice, bob, None, "sk-qg-other")] == [401] * 4
    assert "none active, 2 revoked: every request is refused" in gw.log()

    qwen_keys(env, "delete", "alice")
    until(lambda: health_keys(gw) == {"active": 0, "revoked": 1, "state": "read"}, "alice deleted", limit=5)
    db = sqlite3.connect(state / "keys.sqlite3")
    assert [r[0] for r in db.execute("SELECT name FROM client_keys")] == ["bob"]
    assert [r[0] for r in db.execute("SELECT DISTINCT name FROM key_day")] == ["bob"]  # alice's spend: gone
    db.close()
    until(lambda: {r["key_name"] for r in ledger_rows(state)} >= {"alice", "bob"}, "the ledger keeping her history")
    assert status(gw, None) == 401 and KEYLESS not in gw.log()

    qwen_keys(env, "delete", "bob")
    until(lambda: status(gw, None) == 200, "the gateway keyless again", limit=5)
    assert gw.log().count(KEYLESS) == 1
    assert health_keys(gw) == {}  # a gateway without named keys says nothing of them
    assert status(gw, alice) == 200  # loopback, no keys: open, as before any key existed
    assert json.loads(qwen_keys(env, "list", "--json").stdout) == []
    gone = qwen_keys(env, "delete", "bob", ok=False)
    assert gone.returncode == 1 and "no key named 'bob'" in gone.stderr
    again = add_key(env, "alice")  # the name may be used again: a new key, spend from zero
    until(lambda: status(gw, None) == 401, "a key again", limit=5)
    assert status(gw, again) == 200 and status(gw, alice) == 401
    assert "a named client key was added: every request now needs a key (1 active" in gw.log()
    assert alice not in gw.log() and again not in gw.log()


def test_the_401_for_a_missing_key_says_how_to_get_one(tmp_path, emu, make_gateway):
    env = team_env(tmp_path, emu)
    add_key(env, "alice")
    gw = make_gateway(env=env)
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "gpt-4o", "messages": HI}, trust_env=False)
    error = r.json()["error"]
    assert r.status_code == 401 and error["code"] == "invalid_api_key"
    assert error["message"].startswith("You didn't provide an API key.")
    assert "qwen-keys add" in error["message"]  # how to get one
    assert "On this machine, `qwen-keys list` shows the gateway's named keys" in error["message"]  # loopback
    with pytest.raises(openai.AuthenticationError) as e:
        openai_client(gw.url, "sk-qg-guessed").chat.completions.create(model="gpt-4o", messages=HI)
    assert e.value.body["message"].startswith("Incorrect API key provided.") and "qwen-keys list" in e.value.message


@pytest.mark.skipif(not ANTHROPIC_PYTHON.exists(), reason=NO_ANTHROPIC)
def test_the_anthropic_sdk_gets_the_same_advice(tmp_path, emu, make_gateway):
    env = team_env(tmp_path, emu)
    add_key(env, "alice")
    gw = make_gateway(env=env)
    raised = anthropic_calls(gw.url, "sk-ant-guessed", [{"op": "create", "params": MESSAGE}])[0]["raised"]
    assert raised["class"] == "AuthenticationError" and raised["body"]["error"]["type"] == "authentication_error"
    assert "qwen-keys add" in raised["message"] and "qwen-keys list" in raised["message"]
