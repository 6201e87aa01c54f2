"""auth/ without a server: file format, lock protocol, settings, pool logic, key accounts, registry."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import time
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qwen_gateway.auth import credfile, oauth
from qwen_gateway.auth.accounts import (DEFAULT, BrokenAccount, KeyAccount, OAuthAccount, Registry, check_name,
                           save_login)
from qwen_gateway.auth.base import KEY, OAUTH, Account, AccountUnavailable, Credential
from qwen_gateway.auth.credfile import (LOGIN_ORDER, REFRESH_ORDER, CredentialFileError, FileLock, LockTimeout, dump_creds,
                           is_fresh, read_creds, write_creds)
from qwen_gateway.auth.pool import AccountPool, PoolExhausted, next_reset
from qwen_gateway.auth.settings import AuthSettings
from qwen_gateway.auth.state import AccountState


@pytest.fixture
def settings(tmp_path) -> AuthSettings:
    return AuthSettings.from_env(qwen_dir=tmp_path / ".qwen", state_dir=tmp_path / "state",
                                 oauth_base_url="http://127.0.0.1:9", default_api_base="http://127.0.0.1:9/v1")


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


# ---- OAuth wire details ------------------------------------------------------------------------------


def test_pkce_pair_is_s256():
    verifier, challenge = oauth.pkce_pair()
    assert len(verifier) == 43 and set(verifier) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge == expected and "=" not in challenge and len(challenge) == 43
    assert oauth.pkce_pair()[0] != verifier


def test_form_encoding_is_encode_uri_component():
    body = oauth.form({"scope": oauth.SCOPE, "x": "a+b/c=d&e"}).decode()
    assert body == "scope=openid%20profile%20email%20model.completion&x=a%2Bb%2Fc%3Dd%26e"


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=20), max_size=5))
def test_form_never_uses_plus_for_spaces(d):
    assert "+" not in oauth.form(d).decode()


def test_creds_from_token_keeps_refresh_token_and_resource_url():
    old = {"access_token": "a0", "refresh_token": "r0", "token_type": "Bearer", "resource_url": "portal.qwen.ai",
           "expiry_date": 1}
    new = oauth.creds_from_token({"access_token": "a1", "token_type": "Bearer", "expires_in": 60}, previous=old,
                                 now_ms=1_000_000)
    assert new == {"access_token": "a1", "token_type": "Bearer", "refresh_token": "r0",
                   "resource_url": "portal.qwen.ai", "expiry_date": 1_060_000}
    rotated = oauth.creds_from_token({"access_token": "a2", "refresh_token": "r2", "resource_url": "other.host",
                                      "expires_in": 10}, previous=old, now_ms=0)
    assert rotated["refresh_token"] == "r2" and rotated["resource_url"] == "other.host"


# ---- the credential file -------------------------------------------------------------------------------


def test_write_creds_is_byte_compatible_with_qwen_code(tmp_path):
    path = tmp_path / "q" / "oauth_creds.json"
    creds = {"expiry_date": 1767225600000, "resource_url": "portal.qwen.ai", "token_type": "Bearer",
             "refresh_token": "rt", "access_token": "at"}
    old = os.umask(0)
    try:
        write_creds(path, creds, LOGIN_ORDER)
    finally:
        os.umask(old)
    raw = path.read_text()
    assert raw == ('{\n  "access_token": "at",\n  "refresh_token": "rt",\n  "token_type": "Bearer",\n'
                   '  "resource_url": "portal.qwen.ai",\n  "expiry_date": 1767225600000\n}')
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    write_creds(path, creds, REFRESH_ORDER)
    assert list(json.loads(path.read_text())) == list(REFRESH_ORDER)
    assert [p.name for p in path.parent.iterdir()] == ["oauth_creds.json"]  # no temp files left


def test_write_creds_drops_none_and_tightens_an_open_file(tmp_path):
    path = tmp_path / "oauth_creds.json"
    path.write_text("{}")
    path.chmod(0o644)
    write_creds(path, {"access_token": "a", "refresh_token": "r", "token_type": "Bearer", "resource_url": None,
                       "expiry_date": 5}, LOGIN_ORDER)
    assert list(json.loads(path.read_text())) == ["access_token", "refresh_token", "token_type", "expiry_date"]
    assert mode(path) == 0o600
    assert dump_creds({"a": "é"}) == '{\n  "a": "é"\n}'  # ensure_ascii=False, like JSON.stringify


@pytest.mark.parametrize("content,problem", [
    ("{not json", "not valid JSON"),
    ('{"access_token": "a", "token_type": "Bearer", "expiry_date": 1}', "not a valid"),
    ('{"access_token": "a", "refresh_token": "r", "token_type": "Bearer", "expiry_date": "soon"}', "numeric"),
    ('{"access_token": "a", "refresh_token": "r", "token_type": "Bearer", "expiry_date": true}', "numeric"),
    ("[]", "not a valid"),
])
def test_read_creds_applies_qwen_codes_validation(tmp_path, content, problem):
    path = tmp_path / "oauth_creds.json"
    path.write_text(content)
    with pytest.raises(CredentialFileError, match=problem) as e:
        read_creds(path)
    assert '"a"' not in str(e.value)
    assert read_creds(tmp_path / "absent.json") is None


def test_freshness_uses_the_30_second_buffer():
    creds = {"expiry_date": 100_000}
    assert is_fresh(creds, now_ms=69_999)
    assert not is_fresh(creds, now_ms=70_000)


# ---- the lock file -------------------------------------------------------------------------------------


def test_lock_is_exclusive_and_holds_a_uuid(tmp_path):
    path = tmp_path / "oauth_creds.lock"
    with FileLock(path) as lock:
        assert lock.held and len(path.read_text()) == 36
        t0 = time.monotonic()
        with pytest.raises(LockTimeout, match="Failed to acquire file lock for token refresh: timeout exceeded"):
            FileLock(path, attempts=3).acquire()
        assert time.monotonic() - t0 >= 0.1 + 0.15  # waited 100 ms, then x1.5
    assert not path.exists()


def test_stale_lock_is_broken_without_reading_it(tmp_path):
    path = tmp_path / "oauth_creds.lock"
    path.write_text('{"lockId": "old-qwen-code", "timestamp": 1}')  # PR #443-era content: never parsed
    os.utime(path, (time.time() - 11, time.time() - 11))
    with FileLock(path, attempts=2):  # default stale limit 10 s: broken at once, taken at the next attempt
        assert len(path.read_text()) == 36
    assert not list(tmp_path.iterdir())  # the .stale.<uuid> copy is gone too


def test_young_lock_is_respected(tmp_path):
    path = tmp_path / "oauth_creds.lock"
    path.write_text("someone-else")
    os.utime(path, (time.time() - 9, time.time() - 9))
    with pytest.raises(TimeoutError):
        FileLock(path, attempts=2).acquire()
    assert path.read_text() == "someone-else"


def test_release_never_removes_another_holders_lock(tmp_path):
    path = tmp_path / "oauth_creds.lock"
    mine = FileLock(path)
    mine.acquire()
    os.utime(path, (time.time() - 30, time.time() - 30))
    theirs = FileLock(path, attempts=2)
    theirs.acquire()  # broke mine as stale
    mine.release()
    assert path.exists() and theirs.held
    theirs.release()
    assert not path.exists()


def test_touch_keeps_a_held_lock_young(tmp_path):
    path = tmp_path / "oauth_creds.lock"
    with FileLock(path) as lock:
        os.utime(path, (time.time() - 8, time.time() - 8))
        lock.touch()
        assert time.time() - path.stat().st_mtime < 2


def test_held_locks_are_released_at_exit(tmp_path):
    path = tmp_path / "oauth_creds.lock"
    lock = FileLock(path)
    lock.acquire()
    credfile._release_all()
    assert not path.exists() and not lock.held


# ---- settings ------------------------------------------------------------------------------------------


def test_settings_from_env_and_overrides(monkeypatch, tmp_path):
    for k in ("QWEN_DIR", "QWEN_GATEWAY_HOME", "QWEN_OAUTH_BASE_URL", "QWEN_API_BASE", "QWEN_QUOTA_RESET_HOUR_UTC"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    s = AuthSettings.from_env()
    assert s.qwen_dir == tmp_path / ".qwen" and s.state_dir == tmp_path / ".qwen-gateway"
    assert s.oauth_base_url == "https://chat.qwen.ai"
    assert s.default_api_base == "https://dashscope.aliyuncs.com/compatible-mode/v1"
    assert s.client_id == "f0304373b74a44d2b584a3fb70ca9e56" and s.lock_stale_s == 10.0
    monkeypatch.setenv("QWEN_DIR", str(tmp_path / "q"))
    monkeypatch.setenv("QWEN_GATEWAY_HOME", str(tmp_path / "g"))
    monkeypatch.setenv("QWEN_OAUTH_BASE_URL", "http://127.0.0.1:1/")
    monkeypatch.setenv("QWEN_API_BASE", "https://dashscope-intl.aliyuncs.com/compatible-mode/v1")
    monkeypatch.setenv("QWEN_QUOTA_RESET_HOUR_UTC", "16")
    s = AuthSettings.from_env(state_dir=None, oauth_base_url="http://127.0.0.1:2")
    assert s.qwen_dir == tmp_path / "q" and s.state_dir == tmp_path / "g"
    assert s.oauth_base_url == "http://127.0.0.1:2" and s.quota_reset_hour_utc == 16
    assert s.default_api_base == "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"
    assert s.creds_path("default").name == "oauth_creds.json" and s.creds_path("w").name == "oauth_creds_w.json"


# ---- pool logic, with in-memory accounts ---------------------------------------------------------------


class FakeAccount(Account):
    def __init__(self, name: str, *, fail: AccountUnavailable | None = None, kind: str = KEY) -> None:
        self.name = name
        self.kind = kind
        self.fail = fail
        self.forced = 0

    async def credential(self, *, force_refresh: bool = False) -> Credential:
        self.forced += force_refresh
        if self.fail:
            raise self.fail
        return Credential(self.name, self.kind, f"http://{self.name}.test/v1", f"secret-{self.name}")

    def status(self) -> dict:
        return {"name": self.name, "kind": self.kind, "state": "ok" if not self.fail else "missing",
                "base_url": f"http://{self.name}.test/v1"}


@pytest.fixture
def state(tmp_path):
    s = AccountState(tmp_path / "state.sqlite3")
    yield s
    s.close()


async def test_round_robin_and_exclude(state):
    pool = AccountPool([FakeAccount("a"), FakeAccount("b"), FakeAccount("c")], state)
    assert [(await pool.acquire()).account for _ in range(4)] == ["a", "b", "c", "a"]
    assert (await pool.acquire(exclude={"b"})).account == "c"
    assert (await pool.acquire(exclude=["a", "c"])).account == "b"


async def test_quota_rotates_and_exhaustion_names_every_account(state):
    pool = AccountPool([FakeAccount("a"), FakeAccount("b")], state)
    first = await pool.acquire()
    pool.report(first.account, "quota")
    assert (await pool.acquire()).account == "b"
    assert (await pool.acquire()).account == "b"
    pool.report("b", "quota", retry_after=60)
    with pytest.raises(PoolExhausted) as e:
        await pool.acquire()
    assert isinstance(e.value, AccountUnavailable) and not e.value.needs_login
    assert time.time() + 55 < e.value.retry_at <= time.time() + 61  # b comes back first (a: next reset)
    assert "a: quota exhausted, cooling down until" in str(e.value) and "b: quota exhausted" in str(e.value)
    states = {r["name"]: (r["state"], r["cooldown_until"]) for r in pool.status()}
    assert states["a"][0] == states["b"][0] == "cooling_down" and states["a"][1].endswith("Z")


async def test_quota_default_cooldown_is_the_next_reset(state):
    pool = AccountPool([FakeAccount("a")], state, reset_hour_utc=16)
    pool.report("a", "quota")
    until = state.get("a")["cooldown_until"]
    assert until == next_reset(time.time(), 16) and time.gmtime(until).tm_hour == 16


async def test_throttle_backs_off_and_ok_resets(state):
    pool = AccountPool([FakeAccount("a")], state)
    waits = []
    for _ in range(7):
        now = time.time()
        pool.report("a", "throttle")
        waits.append(round(state.get("a")["cooldown_until"] - now))
    assert waits == [1, 2, 4, 8, 16, 30, 30]
    pool.report("a", "ok")
    now = time.time()
    pool.report("a", "throttle", retry_after=3)
    assert round(state.get("a")["cooldown_until"] - now) == 3
    pool.report("a", "throttle", retry_after=0)
    assert (await pool.acquire()).account == "a"


async def test_ok_counts_and_other_outcomes_change_nothing(state, tmp_path):
    pool = AccountPool([FakeAccount("a")], state)
    for _ in range(3):
        pool.report("a", "ok")
    pool.report("a", "error")
    pool.report("a", "auth")
    assert pool.status()[0]["requests_today"] == 3 and pool.status()[0]["state"] == "ok"
    with pytest.raises(ValueError):
        pool.report("a", "bogus")
    state.flush()
    other = AccountState(tmp_path / "state.sqlite3")  # persisted
    assert other.requests_today("a") == 3
    other.close()


async def test_needs_login_everywhere_is_a_login_error(state):
    dead = AccountUnavailable("a: Refresh token expired or invalid; run `qwen-auth login`", needs_login=True)
    pool = AccountPool([FakeAccount("a", fail=dead, kind=OAUTH)], state)
    with pytest.raises(PoolExhausted) as e:
        await pool.acquire()
    assert e.value.needs_login and e.value.retry_at is None and "qwen-auth login" in str(e.value)


async def test_no_accounts_tells_how_to_add_one(state):
    with pytest.raises(AccountUnavailable) as e:
        await AccountPool([], state).acquire()
    assert "qwen-auth login" in str(e.value) and "qwen-auth add-key" in str(e.value)


async def test_refreshed_forces_a_refresh(state):
    a = FakeAccount("a")
    pool = AccountPool([a], state)
    assert (await pool.refreshed("a")).token == "secret-a" and a.forced == 1
    with pytest.raises(AccountUnavailable):
        await pool.refreshed("nope")


@given(st.floats(min_value=0, max_value=4e9), st.integers(min_value=0, max_value=23))
def test_next_reset_is_the_next_reset_hour(now, hour):
    r = next_reset(now, hour)
    assert now < r <= now + 86400 and r % 86400 == hour * 3600


# ---- key accounts and the registry ----------------------------------------------------------------------


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
                              model_map=cred.model_map, default_model="qwen3-coder-plus", embeddings=True)
    assert dict(cred.model_map) == {"gpt-4o": "qwen3-coder-plus"} and "sk-secret" not in repr(cred)
    status = json.dumps(acct.status())
    assert "sk-secret" not in status and "$TEST_DS_KEY" in status


def test_registry_entries_that_cannot_work_are_shown_not_used(settings, state):
    Registry(settings).save({"accounts": [
        {"name": "ok", "kind": "key", "base_url": "http://x/v1", "key": "sk-stored"},
        {"name": "nourl", "kind": "key", "key_env": "X"},
        {"name": "../evil", "kind": "oauth"},
        {"name": "odd", "kind": "carrier-pigeon"},
        "garbage",
    ]})
    assert mode(settings.accounts_path) == 0o600
    accts = Registry(settings).accounts(state)
    assert [type(a) for a in accts] == [KeyAccount, BrokenAccount, BrokenAccount, BrokenAccount]
    assert all(a.status()["state"] == "error" for a in accts[1:])


def test_account_names_are_safe_file_names():
    assert check_name("work-2.b_c") == "work-2.b_c"
    for bad in ("", "../x", "a/b", "default", ".hidden", "x" * 65, "a b", "x.json"):
        with pytest.raises(ValueError):
            check_name(bad)


async def test_unreadable_accounts_json_keeps_the_pool_alive(settings):
    settings.state_dir.mkdir(parents=True)
    settings.accounts_path.write_text("{broken")
    pool = AccountPool.from_settings(settings)
    with pytest.raises(AccountUnavailable, match="accounts.json is unreadable"):
        await pool.acquire()
    assert pool.status()[-1]["state"] == "error"
    pool.close()


# ---- an OAuth account without a server ------------------------------------------------------------------


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


def test_save_login_registers_extra_accounts_and_reattaches_default(settings):
    reg = Registry(settings)
    reg.save({"detach_default": True, "accounts": []})
    path, creds = save_login(settings, None, {"access_token": "a", "refresh_token": "r", "token_type": "Bearer",
                                              "expires_in": 60, "resource_url": "h"})
    assert path == settings.default_creds_path and "detach_default" not in reg.load()
    assert list(json.loads(path.read_text())) == list(LOGIN_ORDER)
    save_login(settings, "work", {"access_token": "b", "refresh_token": "r2", "expires_in": 60})
    assert reg.find(reg.load(), "work") == {"name": "work", "kind": "oauth"}
    assert mode(settings.creds_path("work")) == 0o600
    reg.put({"name": "k", "kind": "key", "base_url": "http://x/v1", "key_env": "K"})
    with pytest.raises(ValueError, match="already exists"):
        save_login(settings, "k", {"access_token": "c"})
    assert not settings.creds_path("k").exists()


def test_form_matches_urlencode_quote():
    d = {"grant_type": oauth.DEVICE_GRANT, "client_id": "id", "device_code": "d c"}
    assert oauth.form(d) == urlencode(d, quote_via=quote).encode()
