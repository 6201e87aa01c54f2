"""auth/ without a process: file format, lock protocol, settings, pool logic, key accounts, registry, plans,
redaction, the QR code, the CLI's parser. An OAuth server, where one is needed, is a scripted stub served
from a thread of this process on loopback (tests/helpers/oauth_stub.py)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import inspect
import json
import os
import stat
import time
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from qwen_gateway.accounts import KEY, OAUTH, AccountUnavailable, Credential, Outcome, Pool
from qwen_gateway.auth import filelock, oauth
from qwen_gateway.auth.account import Account
from qwen_gateway.auth.credfile import (LOGIN_ORDER, REFRESH_ORDER, CredentialFileError, dump_creds, is_fresh,
    read_creds, write_creds)
from qwen_gateway.auth.filelock import FileLock, LockTimeout
from qwen_gateway.auth.key_account import BrokenAccount, KeyAccount
from qwen_gateway.auth.names import DEFAULT, check_name
from qwen_gateway.auth.oauth_account import OAuthAccount
from qwen_gateway.auth.pool import AccountPool, PoolExhausted, next_reset
from qwen_gateway.auth.oauth_replies import REDACTED, redact
from qwen_gateway.auth.registry import AccountExists, Registry, save_login
from qwen_gateway.auth.state import AccountState
from qwen_gateway.settings.auth import INTERVAL_ENV, AuthSettings, resolve_state_dir


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


def test_lock_is_exclusive_and_holds_a_uuid(tmp_path, monkeypatch):
    path = tmp_path / "oauth_creds.lock"
    with FileLock(path) as lock:
        assert lock.held and len(path.read_text()) == 36
        slept: list[float] = []
        monkeypatch.setattr(filelock.time, "sleep", slept.append)
        with pytest.raises(LockTimeout, match="Failed to acquire file lock for token refresh: timeout exceeded"):
            FileLock(path, attempts=3).acquire()
        assert slept == [0.1, pytest.approx(0.15)]  # waited 100 ms, then x1.5 (qwen-code's defaults)
    assert not path.exists()



def test_no_wait_after_the_last_attempt(tmp_path, monkeypatch):
    """Waiting after the last failed attempt only delays the timeout (by up to max_delay)."""
    path = tmp_path / "oauth_creds.lock"
    path.write_text("someone-else")
    slept: list[float] = []
    monkeypatch.setattr(filelock.time, "sleep", slept.append)
    with pytest.raises(LockTimeout):
        FileLock(path, attempts=3, first_delay=0.1).acquire()
    assert slept == [0.1, pytest.approx(0.15)]

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
    with pytest.raises(TimeoutError):  # the back-off itself is test_lock_is_exclusive_and_holds_a_uuid's
        FileLock(path, attempts=2, first_delay=0.01).acquire()
    assert path.read_text() == "someone-else"


def test_release_never_removes_another_holders_lock(tmp_path):
    path = tmp_path / "oauth_creds.lock"
    mine = FileLock(path)
    mine.acquire()
    os.utime(path, (time.time() - 30, time.time() - 30))
    os.rename(path, tmp_path / "oauth_creds.lock.stale.x")  # qwen-code broke it as stale, and took it
    (tmp_path / "oauth_creds.lock.stale.x").unlink()
    path.write_text("qwen-code's own uuid")
    mine.release()
    assert path.read_text() == "qwen-code's own uuid" and not mine.held


def test_a_live_gateways_lock_is_never_broken_by_another_gateway(tmp_path):
    """Its OS lock says it is alive, however old its lock file looks (a stopped heartbeat): no second refresher
    that would use up the refresh token under it."""
    path = tmp_path / "oauth_creds.lock"
    with FileLock(path):
        os.utime(path, (time.time() - 30, time.time() - 30))
        held = path.read_bytes()
        with pytest.raises(LockTimeout):
            FileLock(path, attempts=2, first_delay=0.01).acquire()
        assert path.read_bytes() == held
    assert not list(tmp_path.iterdir())  # the lock and its OS lock's file gone


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
    filelock._release_all()
    assert not path.exists() and not lock.held


# ---- settings ------------------------------------------------------------------------------------------


def test_settings_from_env_and_overrides(monkeypatch, tmp_path):
    for k in ("QWEN_DIR", "QWEN_GATEWAY_HOME", "QWEN_OAUTH_BASE_URL", "QWEN_API_BASE", "QWEN_QUOTA_RESET_HOUR_UTC",
              *INTERVAL_ENV.values()):
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

    async def credential(self, *, force_refresh: bool = False, refused: str | None = None) -> Credential:
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
    pool.report("a", Outcome.ERROR)
    pool.report("a", "auth")  # the string value is accepted too
    assert pool.status()[0]["requests_today"] == 3 and pool.status()[0]["state"] == "ok"
    with pytest.raises(ValueError, match="unknown outcome"):
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


async def test_exhaustion_no_wait_can_end_is_not_transient(state):
    """No account, or every one needing a login or a key: nothing a client's retry can change."""
    dead = AccountUnavailable("a: Refresh token expired or invalid; run `qwen-auth login`", needs_login=True)
    for pool in (AccountPool([], state), AccountPool([FakeAccount("a", fail=dead, kind=OAUTH)], state),
                 AccountPool([FakeAccount("a", fail=AccountUnavailable("a: env var K is not set"))], state)):
        with pytest.raises(AccountUnavailable) as e:
            await pool.acquire()
        assert not e.value.transient, str(e.value)


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


# ---- intervals are settings ------------------------------------------------------------------------------


def test_intervals_are_settings_with_env_vars(monkeypatch, tmp_path):
    for var in INTERVAL_ENV.values():
        monkeypatch.delenv(var, raising=False)
    s = AuthSettings.from_env(qwen_dir=tmp_path, state_dir=tmp_path)
    assert {k: getattr(s, k) for k in INTERVAL_ENV} == {
        "file_check_s": 5.0, "accounts_check_s": 5.0, "refresh_retry_s": 5.0, "refresh_backoff_s": 30.0,
        "refresh_wait_s": 1.0, "lock_stale_s": 10.0}
    for i, var in enumerate(INTERVAL_ENV.values()):
        monkeypatch.setenv(var, f"0.{i + 1}")
    s = AuthSettings.from_env(qwen_dir=tmp_path, state_dir=tmp_path, refresh_wait_s=0.25)
    assert [getattr(s, k) for k in INTERVAL_ENV] == [0.1, 0.2, 0.3, 0.4, 0.25, 0.6]  # an override wins
    monkeypatch.setenv("QWEN_REFRESH_RETRY_S", "soon")
    with pytest.raises(ValueError, match="QWEN_REFRESH_RETRY_S must be a number"):
        AuthSettings.from_env(qwen_dir=tmp_path, state_dir=tmp_path)
    with pytest.raises(ValueError, match="lock_stale_s"):
        AuthSettings(tmp_path, tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9/v1", lock_stale_s=-1)
    with pytest.raises(TypeError, match="unknown AuthSettings field"):
        AuthSettings.from_env(refresh_every_s=1)


def test_one_resolver_for_the_state_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("QWEN_GATEWAY_HOME", raising=False)
    assert resolve_state_dir() == tmp_path / ".qwen-gateway"
    monkeypatch.setenv("QWEN_GATEWAY_HOME", str(tmp_path / "env"))
    assert resolve_state_dir() == tmp_path / "env" == AuthSettings.from_env().state_dir
    assert resolve_state_dir("~/opt") == tmp_path / "opt" == AuthSettings.from_env(state_dir=tmp_path / "opt").state_dir


async def test_the_pool_rereads_accounts_json_every_accounts_check_s(settings):
    settings.accounts_check_s = 3600
    settings.file_check_s = 0  # not the interval that governs the account list
    pool = AccountPool.from_settings(settings)
    Registry(settings).put({"name": "k", "kind": "key", "base_url": "http://127.0.0.1:9/v1", "key": "sk-1"})
    with pytest.raises(AccountUnavailable, match="No Qwen account is configured"):
        await pool.acquire()
    pool.check_every_s = 0
    assert (await pool.acquire()).account == "k"
    pool.close()
    settings.accounts_check_s = 0
    pool = AccountPool.from_settings(settings)
    Registry(settings).put({"name": "j", "kind": "key", "base_url": "http://127.0.0.1:9/v1", "key": "sk-2"})
    assert {(await pool.acquire()).account for _ in range(2)} == {"j", "k"}
    pool.close()


# ---- the Pool protocol ------------------------------------------------------------------------------------


def test_account_pool_is_the_pool_protocol():
    assert Pool in AccountPool.__mro__  # declared, not just duck-typed
    methods = [n for n, _ in inspect.getmembers(Pool, inspect.isfunction) if not n.startswith("_")]
    assert set(methods) == {"acquire", "refreshed", "report", "status", "reload", "flush", "close"}
    for name in methods:
        want = inspect.signature(getattr(Pool, name)).parameters
        have = inspect.signature(getattr(AccountPool, name)).parameters
        assert [(p.name, p.kind) for p in want.values()] == [(p.name, p.kind) for p in have.values()], name
        assert getattr(AccountPool, name) is not getattr(Pool, name), name  # implemented, not inherited


class SlowRefresh(FakeAccount):
    """An account whose refresh takes `delay` seconds (e.g. waiting for another process's lock)."""

    def __init__(self, name: str, delay: float, *, fail: AccountUnavailable | None = None) -> None:
        super().__init__(name)
        self.delay = delay
        self.refresh_fail = fail
        self.started = 0
        self.done = False

    def ready(self):
        return Credential(self.name, KEY, "http://x/v1", "t") if self.done else None

    @property
    def refreshing(self) -> bool:
        return self.started > 0 and not self.done

    async def credential(self, *, force_refresh: bool = False, refused: str | None = None) -> Credential:
        self.started += 1
        await asyncio.sleep(self.delay)
        if self.refresh_fail:
            raise self.refresh_fail
        self.done = True
        return Credential(self.name, KEY, "http://x/v1", "t")


async def test_a_slow_refresh_does_not_hold_up_a_usable_account(state):
    slow = SlowRefresh("a", 0.5)
    pool = AccountPool([slow, FakeAccount("b")], state, refresh_wait_s=0.15)
    t0 = time.monotonic()
    assert (await pool.acquire()).account == "b"
    first = time.monotonic() - t0
    t0 = time.monotonic()
    assert [(await pool.acquire()).account for _ in range(3)] == ["b", "b", "b"]  # no wait while it refreshes
    later = time.monotonic() - t0
    assert 0.15 <= first < 0.45 and later < 0.1, (first, later)
    await asyncio.sleep(0.5)  # the refresh finished alone
    assert slow.done and {(await pool.acquire()).account for _ in range(2)} == {"a", "b"}


async def test_with_nothing_else_usable_the_refresh_is_awaited(state):
    pool = AccountPool([SlowRefresh("a", 0.15)], state, refresh_wait_s=0.05)
    assert (await pool.acquire()).account == "a"
    dead = AccountUnavailable("c: Refresh token expired or invalid; run `qwen-auth add c`", needs_login=True)
    pool = AccountPool([SlowRefresh("c", 0.1, fail=dead), FakeAccount("d", fail=AccountUnavailable("d: gone"))],
                       state, refresh_wait_s=0.01)
    with pytest.raises(PoolExhausted, match="qwen-auth add c") as e:
        await pool.acquire()
    assert "d: gone" in str(e.value)


# ---- start-up lines -----------------------------------------------------------------------------------


async def test_describe_gives_one_line_per_account_and_warns_when_none_is_usable(state, monkeypatch):
    monkeypatch.setenv("PLAN_KEY", "sk-sp-0123456789abcdef")
    key = KeyAccount({"name": "k", "base_url": "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
                      "key_env": "PLAN_KEY"})
    pool = AccountPool([FakeAccount("a"), key], state)
    lines = pool.describe()
    assert lines[:2] == ["account a (key): ok, upstream http://a.test/v1",
                         "account k (key): ok, upstream https://dashscope-intl.aliyuncs.com/compatible-mode/v1"]
    assert lines[2].startswith("warning: account k: this looks like a Coding Plan or Token Plan key")
    assert len(lines) == 3 and "sk-sp-0123456789abcdef" not in "\n".join(lines)
    pool.report("a", Outcome.QUOTA, retry_after=60)
    monkeypatch.delenv("PLAN_KEY")
    lines = pool.describe()
    assert "account a (key): cooling_down" in lines[0] and "cooling down until 20" in lines[0]
    assert lines[1] == "account k (key): missing, upstream https://dashscope-intl.aliyuncs.com/compatible-mode/v1" \
                       " - env var PLAN_KEY is not set"
    assert lines[-1].startswith("WARNING: no Qwen account is usable now")
    empty = AccountPool([], state).describe()
    assert len(empty) == 1 and empty[0].startswith("WARNING: no Qwen account is configured")
    assert "qwen-auth login" in empty[0] and "qwen-auth add-key" in empty[0]


def test_registry_never_replaces_silently(settings):
    reg = Registry(settings)
    reg.put({"name": "k", "kind": "key", "base_url": "http://x/v1", "key": "sk-stored"})
    before = settings.accounts_path.read_bytes()
    with pytest.raises(AccountExists):
        reg.put({"name": "k", "kind": "key", "base_url": "http://y/v1", "key_env": "K"})
    assert settings.accounts_path.read_bytes() == before
    old = reg.put({"name": "k", "kind": "key", "base_url": "http://y/v1", "key_env": "K"}, replace=True)
    assert old["key"] == "sk-stored" and reg.find(reg.load(), "k")["base_url"] == "http://y/v1"


# ---- redaction ---------------------------------------------------------------------------------------------

TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.mark.parametrize("text,kept,gone", [
    ('{"error":"invalid_request","error_description":"Invalid refresh token or client_id"}',
     ["Invalid refresh token or client_id", "invalid_request"], []),
    ('{"error":"server_error","access_token":"x1","refresh_token":"short"}', ["server_error"], ['"x1"', "short"]),
    ("grant_type=refresh_token&refresh_token=abc123&client_id=f0", ["grant_type=refresh_token"], ["abc123"]),
    ("upstream said: Authorization: Bearer eyJhbGciOi.J9eyJzdWIi.OiIxMjM0 rejected", ["rejected"], ["eyJhbGciOi"]),
    ("request a1b2c3d4e5f6a7b8c9d0 failed", ["request", "failed"], ["a1b2c3d4e5f6a7b8c9d0"]),
    ('{"error":"x","detail":"new access token: QWxhZGRpbjpvcGVuIHNlc2FtZQ2025ab"', ["detail"], ["QWxhZGRpbjpv"]),
    ('{"msg": "cut {"access_token": "tok-abcdefghijklmnop', ["msg"], ["tok-abcdefghijklmnop"]),
])
def test_redact(text, kept, gone):
    out = redact(text)
    assert REDACTED in out or not gone
    assert all(k in out for k in kept), out
    assert not any(g in out for g in gone), out


def test_redact_before_cutting():
    token = "Zx9" + "k" * 37  # token-shaped by length
    text = "x " * 145 + token + " tail" * 20
    assert "Zx9k" in text[:300] and "Zx9k" in redact(text[:300], limit=None)  # cut first: half a token leaks
    out = redact(text, limit=300)
    assert "Zx9k" not in out and REDACTED in out and out.endswith("…") and len(out) <= 301


@given(st.text(alphabet=TOKEN_ALPHABET, min_size=8, max_size=80))
def test_token_values_never_survive(tok):
    assume(tok not in 'error server_error access_token refresh_token grant_type=refresh_token&client_id=x '
                      'Authorization: Bearer anything at all here {"": ", ":"}')
    for text in (json.dumps({"error": "server_error", "access_token": tok}),
                 json.dumps({"refresh_token": tok})[:-2],  # cut short
                 f"grant_type=refresh_token&refresh_token={tok}&client_id=x",
                 f"Authorization: Bearer {tok}"):
        assert tok not in redact(text, limit=None)
    assert tok not in redact(f"anything at all {tok} here", secrets=[tok], limit=None)


async def test_exhaustion_says_whether_only_rate_limits_hold_the_accounts(state):
    pool = AccountPool([FakeAccount("a"), FakeAccount("b")], state)
    pool.report("a", "throttle", retry_after=5)
    pool.report("b", "throttle", retry_after=5)
    with pytest.raises(PoolExhausted) as e:
        await pool.acquire()
    assert e.value.throttled and e.value.retry_at is not None
    pool.report("b", "quota")
    with pytest.raises(PoolExhausted) as e:
        await pool.acquire()
    assert not e.value.throttled  # one account is out of quota: not a plain rate limit
