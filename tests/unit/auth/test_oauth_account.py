"""An OAuth account without a server: its credential from the login file, needs-login, missing and corrupt
files, an unreachable OAuth server."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from qwen_gateway.accounts import OAUTH, AccountUnavailable
from qwen_gateway.auth.credfile import (LOGIN_ORDER, write_creds)
from qwen_gateway.auth.names import DEFAULT
from qwen_gateway.auth.oauth_account import OAuthAccount
from qwen_gateway.upstream.pool.pool import AccountPool, PoolExhausted
from qwen_gateway.auth.state import AccountState


def _seed(settings, name=None, *, expires_in=3600.0, token="at-1", rt="rt-1") -> Path:
    path = settings.creds_path(name)
    write_creds(path, {"access_token": token, "refresh_token": rt, "token_type": "Bearer",
                       "resource_url": "portal.qwen.ai", "expiry_date": int((time.time() + expires_in) * 1000)},
                LOGIN_ORDER)
    return path


async def test_oauth_credential_from_the_file(settings, state):
    path = _seed(settings)
    acct = OAuthAccount(DEFAULT, path, settings, state)
    cred = await acct.credential()
    assert (cred.account, cred.kind, cred.base_url, cred.token) == (DEFAULT, OAUTH, "https://portal.qwen.ai/v1",
                                                                      "at-1")
    assert acct.ready() is cred  # the same login: its credential is not built again for every request
    s = acct.status()
    assert s["state"] == "ok" and s["expires_at"].endswith("Z") and "at-1" not in json.dumps(s)


async def test_needs_login_persists_until_the_file_changes(settings, state, tmp_path):
    path = _seed(settings, expires_in=-60)
    os.utime(path, (time.time() - 5, time.time() - 5))
    state.set(DEFAULT, needs_login=True, login_mtime=path.stat().st_mtime, last_error="400")
    acct = OAuthAccount(DEFAULT, path, settings, AccountState(tmp_path / "state.sqlite3"))
    with pytest.raises(AccountUnavailable, match="Refresh token expired or invalid; run `qwen-auth login`") as e:
        await acct.credential()
    assert e.value.needs_login and acct.status()["state"] == "needs_login"
    _seed(settings, token="at-2")  # qwen-code (or qwen-auth login) logged in again
    acct.file_check_s = 0
    assert (await acct.credential()).token == "at-2"
    assert not acct.state.get(DEFAULT)["needs_login"]
    fresh = AccountState(tmp_path / "state.sqlite3")  # and it is cleared on disk too
    assert not fresh.get(DEFAULT)["needs_login"]
    fresh.close()


async def test_missing_and_corrupt_files(settings, state):
    acct = OAuthAccount("extra", settings.creds_path("extra"), settings, state)
    with pytest.raises(AccountUnavailable, match="qwen-auth add extra"):
        await acct.credential()
    assert acct.status()["state"] == "missing"
    settings.qwen_dir.mkdir(parents=True, exist_ok=True)
    settings.creds_path("extra").write_text("{half")
    with pytest.raises(AccountUnavailable, match="not valid JSON"):
        await acct.credential()
    assert acct.status()["state"] == "error"


async def test_unreachable_oauth_server_is_readable_and_retried_later(settings, state):
    path = _seed(settings, expires_in=10)  # inside the 30 s buffer: needs a refresh
    before = path.read_bytes()
    acct = OAuthAccount(DEFAULT, path, settings, state)  # oauth_base_url points at a closed port
    with pytest.raises(AccountUnavailable, match="cannot reach http://127.0.0.1:9") as e:
        await acct.credential()
    assert not e.value.needs_login and path.read_bytes() == before
    assert acct.status()["state"] == "error"
    assert not state.get(DEFAULT)["needs_login"]
    assert e.value.transient  # a later request may find the server back: its client is not told to give up
    with pytest.raises(AccountUnavailable) as again:  # within refresh_retry_s: the failure said again
        await acct.credential()
    assert again.value.transient
    with pytest.raises(PoolExhausted) as e:
        await AccountPool([acct], state).acquire()
    assert e.value.transient and e.value.retry_at is None
