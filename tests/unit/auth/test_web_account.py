"""A Qwen Chat web account behind the pool (auth/web_account.py): off by default, never handed out without an
upstream for it, its refresh through auth.qwen.ai (a scripted server on loopback), punish pages, no secret shown."""

from __future__ import annotations

import os
import stat

import pytest

from qwen_gateway.accounts import WEB
from qwen_gateway.auth import web_session as ws
from qwen_gateway.upstream.pool.pool import PoolExhausted
from qwen_gateway.auth.state import AccountState
from qwen_gateway.auth.web_account import NOT_SERVED, WEB_WARNING, WebAccount
from qwen_gateway.settings.auth import AuthSettings
from helpers.qwen_web_auth import (ITNA, NEW, NOW, SECRETS, TOKEN, UA, import_session, jwt, pool_for, run,
                                   sample_session, settings_for, shown)
from helpers.qwen_web_auth import stub  # noqa: F401  (a fixture)


def test_off_by_default_loaded_for_status_never_handed_out(tmp_path):
    s = settings_for(tmp_path, web_accounts=False)
    assert AuthSettings.from_env().web_accounts is False
    import_session(s)
    pool = pool_for(s)
    try:
        with pytest.raises(PoolExhausted) as e:
            run(pool.acquire())
        assert "chat: disabled: --set qwen_web_accounts=true" in str(e.value) and not e.value.needs_login
        row = pool.status()[0]
        assert (row["kind"], row["state"], row["session"], row["refresh"]) == ("web", "disabled", "ok", "possible")
        assert 0 < row["expires_in_s"] <= 12 * 3600 and row["last_punish"] is None and row["cookies"] == 7
        assert row["bx_headers"] == ["bx-ua", "bx-v"]
        assert WEB_WARNING not in pool.describe()
        assert all(x not in shown(pool) for x in (*SECRETS, "231!bxua-value"))
    finally:
        pool.close()


def test_opted_in_but_no_upstream_for_the_kind_is_never_acquired(tmp_path):
    s = settings_for(tmp_path, web_accounts=True)
    import_session(s)
    pool = pool_for(s, providers=("dashscope",))  # what the gateway's pairing serves today
    try:
        with pytest.raises(PoolExhausted) as e:
            run(pool.acquire())
        assert NOT_SERVED in str(e.value) and not e.value.needs_login and e.value.retry_at is None
        assert pool.status()[0]["state"] == "unserved" and pool.status()[0]["last_error"] == NOT_SERVED
        lines = pool.describe()
        assert lines.count(WEB_WARNING) == 1 and "ban" in WEB_WARNING and "terms" in WEB_WARNING
        assert all(x not in shown(pool) for x in SECRETS)
    finally:
        pool.close()


def test_opted_in_with_an_upstream_hands_out_token_jar_and_browser_headers(tmp_path):
    s = settings_for(tmp_path, web_accounts=True)
    import_session(s)
    pool = pool_for(s, providers=("dashscope", "qwenweb"))  # once the web upstream is in the pairing
    try:
        cred = run(pool.acquire())
        assert (cred.kind, cred.base_url, cred.token) == (WEB, "http://127.0.0.1:9/web", TOKEN)
        assert cred.cookies["ssxmod_itna"] == ITNA and cred.cookies["token"] == TOKEN
        assert dict(cred.headers) == {"user-agent": UA, "bx-ua": "231!bxua-value", "bx-v": "2.5.36"}
    finally:
        pool.close()


def test_an_expiring_session_is_refreshed_and_the_new_one_stored_0600(tmp_path, stub):
    s = settings_for(tmp_path, web_accounts=True, auth_base=stub.url)
    import_session(s, token=jwt(NOW + 20), expires_at=NOW + 20)  # within the refresh margin
    stub.queue(200, {"success": True, "data": {"access_token": NEW, "refresh_token": "rt-rotated-2"}})
    pool = pool_for(s)
    try:
        assert run(pool.acquire()).token == NEW
        path = s.web_session_path("chat")
        on_disk = ws.load(path)
        assert on_disk.token == NEW and on_disk.refresh_token == "rt-rotated-2"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(stub.requests) == 1
        assert run(pool.acquire()).token == NEW and len(stub.requests) == 1  # fresh now: no second refresh
    finally:
        pool.close()


def test_a_refused_refresh_needs_a_new_import_and_the_import_clears_it(tmp_path, stub):
    s = settings_for(tmp_path, web_accounts=True, auth_base=stub.url)
    import_session(s, token=jwt(NOW - 60), expires_at=NOW - 60)
    stub.queue(401, {"detail": "Unauthorized"})
    pool = pool_for(s)
    try:
        with pytest.raises(PoolExhausted) as e:
            run(pool.acquire())
        assert "add-web chat --replace" in str(e.value) and e.value.needs_login
        assert pool.status()[0]["state"] == "needs_login"
        assert ws.load(s.web_session_path("chat")) is not None  # never deleted
        import_session(s)  # what `qwen-auth add-web chat --replace` writes
        path = s.web_session_path("chat")
        later = path.stat().st_mtime + 5  # a newer file than the refusal, whatever the clock's resolution
        os.utime(path, (later, later))
        pool.get("chat")._checked = float("-inf")
        assert run(pool.acquire()).token == TOKEN
    finally:
        pool.close()


def test_a_punish_page_parks_the_account_and_is_shown_as_last_punish(tmp_path, stub):
    s = settings_for(tmp_path, web_accounts=True, auth_base=stub.url)
    import_session(s, token=jwt(NOW - 60), expires_at=NOW - 60)
    stub.queue(200, "<html>aliyun_waf slider ... _____tmd_____/punish?x5secdata=xyz</html>")
    pool = pool_for(s)
    try:
        with pytest.raises(PoolExhausted):
            run(pool.acquire())
        with pytest.raises(PoolExhausted):
            run(pool.acquire())
        assert len(stub.requests) == 1  # parked: never retried in a loop
        row = pool.status()[0]
        assert row["state"] == "needs_login" and row["last_punish"] and "fresh browser login" in row["last_error"]
    finally:
        pool.close()


def test_record_punish_for_the_web_upstream(tmp_path):
    s = settings_for(tmp_path, web_accounts=True)
    import_session(s)
    state = AccountState(s.state_db_path)
    try:
        acct = WebAccount("chat", s.web_session_path("chat"), s, state)
        acct.record_punish()
        assert ws.load(acct.path).last_punish and state.get("chat")["needs_login"]
        assert acct.status()["state"] == "needs_login" and acct.status()["last_punish"]
    finally:
        state.close()


def test_an_expired_session_without_refresh_cookie_names_the_fix(tmp_path):
    s = settings_for(tmp_path, web_accounts=True)
    bare = tuple(c for c in sample_session().cookies if c["name"] != "refresh_token")
    import_session(s, token=jwt(NOW - 60), expires_at=NOW - 60, cookies=bare)
    pool = pool_for(s)
    try:
        with pytest.raises(PoolExhausted) as e:
            run(pool.acquire())
        assert "no refresh_token cookie" in str(e.value) and "qwen-auth add-web chat --replace" in str(e.value)
        row = pool.status()[0]
        assert row["state"] == "needs_login" and row["refresh"].startswith("impossible")
    finally:
        pool.close()


def test_a_cooling_down_web_account_says_so(tmp_path):
    s = settings_for(tmp_path, web_accounts=True)
    import_session(s)
    pool = pool_for(s)
    try:
        pool.report("chat", "throttle", retry_after=20)
        row = pool.status()[0]
        assert row["state"] == "cooling_down" and row["cooldown_until"]
    finally:
        pool.close()
