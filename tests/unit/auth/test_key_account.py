"""API-key accounts: the key read at run time, never shown, and a refused key kept refused until it changes."""

from __future__ import annotations

import json

import pytest

from qwen_gateway.accounts import KEY, AccountUnavailable, Credential, Outcome
from qwen_gateway.auth.key_account import KeyAccount
from qwen_gateway.upstream.pool.pool import AccountPool
from qwen_gateway.auth.state import AccountState


async def test_key_account_reads_its_env_var_at_run_time(monkeypatch):
    acct = KeyAccount({"name": "ds", "kind": KEY, "base_url": "https://dashscope-intl.aliyuncs.com/compatible-mode/v1/",
                       "key_env": "TEST_DS_KEY", "model_map": {"gpt-4o": "qwen3-coder-plus"},
                       "default_model": "qwen3-coder-plus", "embeddings": True})
    monkeypatch.delenv("TEST_DS_KEY", raising=False)
    with pytest.raises(AccountUnavailable, match="env var TEST_DS_KEY is not set"):
        await acct.credential()
    assert acct.status()["state"] == "missing"
    monkeypatch.setenv("TEST_DS_KEY", "sk-secret-123")
    cred = await acct.credential()
    assert cred == Credential("ds", KEY, "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "sk-secret-123",
                              model_map=cred.model_map, default_model="qwen3-coder-plus", embeddings=True,
                              billing="payg:intl")  # how it is paid: the price table reads it
    assert dict(cred.model_map) == {"gpt-4o": "qwen3-coder-plus"} and "sk-secret" not in repr(cred)
    assert acct.ready() is cred  # the same key: its credential is not built again for every request
    monkeypatch.setenv("TEST_DS_KEY", "sk-secret-456")
    assert acct.ready().token == "sk-secret-456"
    status = json.dumps(acct.status())
    assert "sk-secret" not in status and "$TEST_DS_KEY" in status


async def test_a_key_qwen_refuses_stays_refused_until_the_key_changes(monkeypatch, tmp_path):
    """After a 401 a key account is refused (not refreshed, not handed out), across restarts, until its key
    changes; the state keeps a fingerprint of the refused key, never the key."""
    spec = {"name": "ds", "kind": KEY, "base_url": "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
            "key_env": "TEST_DS_KEY"}
    monkeypatch.setenv("TEST_DS_KEY", "sk-wrong-key-0123456789")
    state = AccountState(tmp_path / "state.sqlite3")
    pool = AccountPool([KeyAccount(spec, state)], state)
    cred = await pool.acquire()
    pool.report("ds", Outcome.AUTH)
    with pytest.raises(AccountUnavailable) as e:
        await pool.refreshed("ds", refused=cred.token)
    assert str(e.value).startswith("Qwen refused the key of account ds ($TEST_DS_KEY) with 401: put a valid key "
                                   "for https://dashscope-intl.aliyuncs.com/compatible-mode/v1 in $TEST_DS_KEY")
    (row,) = pool.status()
    assert row["state"] == "refused" and "$TEST_DS_KEY" in row["last_error"]
    with pytest.raises(AccountUnavailable, match=r"Qwen refused the key of account ds"):
        await pool.acquire()
    state.close()
    assert b"sk-wrong-key" not in (tmp_path / "state.sqlite3").read_bytes()
    again = AccountState(tmp_path / "state.sqlite3")  # a restart
    assert AccountPool([KeyAccount(spec, again)], again).status()[0]["state"] == "refused"
    monkeypatch.setenv("TEST_DS_KEY", "sk-right-key-9876543210")  # the user put the right key there
    pool = AccountPool([KeyAccount(spec, again)], again)
    assert (await pool.acquire()).token == "sk-right-key-9876543210"
    assert pool.status()[0]["state"] == "ok" and not again.get("ds")["needs_login"]
    again.close()


async def test_what_add_keys_check_found_is_kept_until_the_key_serves(monkeypatch, tmp_path):
    """qwen-auth add-key's check (cli/auth_keys.py): a check that failed is the account's note while it stays `ok`
    (the pool still tries it), until a request is served with it (pool.report OK) or a check works."""
    spec = {"name": "ds", "kind": KEY, "base_url": "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
            "key_env": "TEST_DS_KEY"}
    monkeypatch.setenv("TEST_DS_KEY", "sk-checked-key-0123456789")
    state = AccountState(tmp_path / "state.sqlite3")
    KeyAccount(spec, state).note_check(False, "key check: the base refused the key (HTTP 401)")
    (row,) = AccountPool([KeyAccount(spec, state)], state).status()
    assert row["state"] == "ok" and row["last_error"].startswith("key check (qwen-auth add-key, ")
    assert row["last_error"].endswith("): key check: the base refused the key (HTTP 401)")
    KeyAccount(spec, state).note_check(True, "Key check: the key works")
    assert AccountPool([KeyAccount(spec, state)], state).status()[0]["last_error"] is None
    KeyAccount(spec, state).note_check(False, "key check: could not reach it")
    pool = AccountPool([KeyAccount(spec, state)], state)
    await pool.acquire()  # still handed out
    pool.report("ds", Outcome.OK)  # the key served: the note goes
    assert pool.status()[0]["last_error"] is None
    state.close()
