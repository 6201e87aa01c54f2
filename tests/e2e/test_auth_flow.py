"""Accounts against the session's Qwen emulator (a process): the device flow's polling, refresh, single
flight, the lock-file protocol across processes, SIGKILL during a refresh with rotating refresh tokens, a
lock held by another process, rotation, key accounts, remote login. (The qwen-auth command:
test_auth_cli.py; without any process: tests/unit/auth/test_oauth_account.py, tests/unit/auth/test_refreshing.py,
tests/unit/auth/test_oauth.py, tests/unit/cli/test_auth.py.)"""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from qwen_gateway.accounts import KEY, OAUTH, AccountUnavailable
from qwen_gateway.cli import auth as qwen_auth
from qwen_gateway.auth import oauth
from qwen_gateway.auth.credfile import LOGIN_ORDER, REFRESH_ORDER, read_creds, write_creds
from qwen_gateway.auth.names import DEFAULT
from qwen_gateway.upstream.pool.pool import AccountPool, PoolExhausted
from qwen_gateway.auth.registry import Registry
from qwen_gateway.auth.remote import RemoteLogin, RemoteLoginError
from qwen_gateway.auth.state import AccountState
from qwen_gateway.settings.auth import AuthSettings
from helpers.auth_env import CLEAN_ENV, NODE_FETCH, Server, run_cli, seed, settings_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def srv(emu) -> Server:
    return Server(emu.proc, emu.port)


@pytest.fixture
def settings(tmp_path, srv):
    return settings_for(tmp_path, srv)


# ---- device login ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 400])
async def test_polling_follows_qwen_code(srv, settings, status):
    """slow_down (429 as qwen-code expects, or 400 per RFC 8628) -> x1.5 up to 10 s; pending -> back to 2 s."""
    srv.switches(slow_down=6, slow_down_status=status)
    verifier, challenge = oauth.pkce_pair()
    device = await oauth.device_code(settings, challenge)
    waits = []

    async def sleep(s):
        waits.append(s)
        if len(waits) == 8:
            srv.admin("POST", "approve", {"user_code": device["user_code"]})

    token = await oauth.poll_token(settings, device, verifier, sleep=sleep)
    assert waits == [3.0, 4.5, 6.75, 10.0, 10.0, 10.0, 2.0, 2.0]
    assert srv.accepts(token["access_token"])


async def test_the_login_command_honours_slow_down(srv, settings):
    srv.switches(slow_down=1, slow_down_status=429, auto_approve=True)
    out, waits = io.StringIO(), []

    async def sleep(s):
        waits.append(s)

    path, creds = await qwen_auth.device_login(settings, None, out=out, show_qr=False, sleep=sleep)
    assert waits == [3.0] and len(srv.requests("/api/v1/oauth2/token")) == 2
    assert "The server asked to poll more slowly" in out.getvalue()
    assert read_creds(path)["access_token"] == creds["access_token"] and srv.accepts(creds["access_token"])
    assert all({k: r["headers"].get(k) for k in NODE_FETCH} == NODE_FETCH for r in srv.oauth_requests())


async def test_polling_gives_up_after_ceil_expires_in_over_2_attempts(srv, settings):
    srv.switches(device_expires_in=7)
    verifier, challenge = oauth.pkce_pair()
    device = await oauth.device_code(settings, challenge)

    async def sleep(_s):
        pass

    with pytest.raises(oauth.OAuthError, match="Authorization timeout, please restart the process.") as e:
        await oauth.poll_token(settings, device, verifier, sleep=sleep)
    assert e.value.code == "timeout" and srv.stats()["token_calls"] == math.ceil(7 / 2)
    with pytest.raises(oauth.OAuthError, match="Device code expired or invalid") as e:  # 401: stop at once
        await oauth.poll_token(settings, {"device_code": "unknown", "expires_in": 600}, verifier, sleep=sleep)
    assert e.value.status == 401 and srv.stats()["token_calls"] == math.ceil(7 / 2) + 1


# ---- refresh ---------------------------------------------------------------------------------------------


async def test_refresh_at_expiry_rotates_and_keeps_resource_url(srv, settings):
    srv.switches(refresh_omit_resource_url=True, rotate_refresh_token=True)
    old, old_rt, path = seed(srv, settings, expires_in=20)  # inside the 30 s buffer: due now
    pool = AccountPool.from_settings(settings)
    cred = await pool.acquire()
    assert cred.kind == OAUTH and cred.token != old and cred.base_url == srv.url + "/v1"
    raw = path.read_text()
    creds = json.loads(raw)
    assert list(creds) == list(REFRESH_ORDER) and raw == json.dumps(creds, indent=2)
    assert creds["resource_url"] == srv.url and creds["refresh_token"] not in (old_rt, None)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and srv.accepts(cred.token)
    assert (await pool.acquire()).token == cred.token and srv.stats()["refresh_calls"] == 1
    req = srv.requests("/api/v1/oauth2/token")[0]
    assert req["body"] == {"grant_type": "refresh_token", "refresh_token": old_rt,
                           "client_id": "f0304373b74a44d2b584a3fb70ca9e56"}
    assert {k: req["headers"].get(k) for k in NODE_FETCH} == NODE_FETCH  # qwen-code's (Node fetch) fingerprint
    assert [p.name for p in path.parent.iterdir()] == ["oauth_creds.json"]  # lock and temp files gone
    pool.close()


async def test_fifty_concurrent_calls_at_expiry_refresh_once(srv, settings):
    srv.switches(refresh_delay_ms=300)
    old, _, _ = seed(srv, settings, expires_in=29)
    pool = AccountPool.from_settings(settings)
    acct = pool.get(DEFAULT)
    creds = await asyncio.gather(*(acct.credential() for _ in range(25)), *(pool.acquire() for _ in range(25)))
    assert len({c.token for c in creds}) == 1 and creds[0].token != old
    assert srv.stats()["refresh_calls"] == 1 and srv.accepts(creds[0].token)
    pool.close()


PROC_SCRIPT = textwrap.dedent("""
    import asyncio, json, sys, time
    from pathlib import Path
    from qwen_gateway.upstream.pool.pool import AccountPool
    from qwen_gateway.settings.auth import AuthSettings
    qwen_dir, state_dir, url, start_at = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    s = AuthSettings.from_env(qwen_dir=Path(qwen_dir), state_dir=Path(state_dir), oauth_base_url=url)
    pool = AccountPool.from_settings(s)
    print("ready", flush=True)
    time.sleep(max(0.0, start_at - time.time()))
    try:
        cred = asyncio.run(pool.acquire())
        print(json.dumps({"token": cred.token}), flush=True)
    except Exception as e:
        print(json.dumps({"error": str(e)}), flush=True)
""")


def spawn(settings: AuthSettings, state_dir: Path, start_at: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PROC_SCRIPT, str(settings.qwen_dir),
                             str(state_dir), settings.oauth_base_url, str(start_at)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CLEAN_ENV)


def test_two_processes_sharing_a_file_refresh_once(srv, settings):
    srv.switches(refresh_delay_ms=500, rotate_refresh_token=True)  # a second refresh with the old token would fail
    old, _, path = seed(srv, settings, expires_in=5)
    start_at = time.time() + 1.5
    procs = [spawn(settings, settings.state_dir, start_at) for _ in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        results.append(json.loads(out.splitlines()[-1]))
    assert all("token" in r for r in results), results
    tokens = {r["token"] for r in results}
    assert len(tokens) == 1 and old not in tokens
    assert srv.stats()["refresh_calls"] == 1
    token = tokens.pop()
    assert read_creds(path)["access_token"] == token and srv.accepts(token)
    assert not path.with_suffix(".lock").exists()


async def test_refresh_rejected_marks_needs_login_and_leaves_the_file(srv, settings):
    for status in (400, 401):
        srv.switches(refresh_fail_status=status)
        write_creds(settings.default_creds_path, {"access_token": "gone", "refresh_token": "dead-rt",
                                                  "token_type": "Bearer", "resource_url": srv.url,
                                                  "expiry_date": int((time.time() - 60) * 1000)}, LOGIN_ORDER)
        before = settings.default_creds_path.read_bytes()
        pool = AccountPool.from_settings(settings)
        with pytest.raises(PoolExhausted) as e:
            await pool.acquire()
        assert e.value.needs_login and "Refresh token expired or invalid; run `qwen-auth login`" in str(e.value)
        assert settings.default_creds_path.read_bytes() == before
        calls = srv.stats()["refresh_calls"]
        with pytest.raises(AccountUnavailable):  # no second try against the server
            await pool.acquire()
        assert srv.stats()["refresh_calls"] == calls
        assert pool.status()[0]["state"] == "needs_login"
        pool.close()
        again = AccountPool.from_settings(settings)  # persisted across restarts
        assert again.status()[0]["state"] == "needs_login"
        again.close()
        os.remove(settings.state_db_path)


async def test_extra_account_needs_login_names_its_add_command(srv, settings):
    write_creds(settings.creds_path("work"), {"access_token": "x", "refresh_token": "dead", "token_type": "Bearer",
                                              "expiry_date": 0}, LOGIN_ORDER)
    Registry(settings).put({"name": "work", "kind": "oauth"})
    pool = AccountPool.from_settings(settings)
    with pytest.raises(AccountUnavailable, match="run `qwen-auth add work`"):
        await pool.acquire()
    srv.switches(auto_approve=True)  # log in again: usable at once
    rc, _, err = run_cli(settings, "add", "work", "--no-qr")
    assert rc == 0, err
    pool.get("work").file_check_s = 0
    assert (await pool.acquire()).account == "work"
    pool.close()


async def test_network_errors_are_readable_and_the_account_stays_usable(srv, settings):
    old, _, path = seed(srv, settings, expires_in=10)
    before = path.read_bytes()
    pool = AccountPool.from_settings(settings)
    for kind, text in (("oauth500", "Token refresh failed: 500"), ("oauth_reset", "cannot reach")):
        srv.admin("POST", "fault", {"kind": kind})
        with pytest.raises(AccountUnavailable, match=text) as e:
            await pool.refreshed(DEFAULT)
        assert not e.value.needs_login and path.read_bytes() == before
        assert pool.status()[0]["state"] == "error"
    cred = await pool.refreshed(DEFAULT)  # the server is back
    assert cred.token != old and srv.accepts(cred.token) and pool.status()[0]["state"] == "ok"
    pool.close()


async def test_a_refresh_by_someone_else_is_used_not_repeated(srv, settings):
    settings.file_check_s = 0.1
    old, _, path = seed(srv, settings, expires_in=3600)
    pool = AccountPool.from_settings(settings)
    assert (await pool.acquire()).token == old
    # qwen-code refreshes the shared file: we pick it up by watching the file
    newer = srv.issue(3600)
    write_creds(path, {"access_token": newer["access_token"], "token_type": "Bearer",
                       "refresh_token": newer["refresh_token"], "resource_url": srv.url,
                       "expiry_date": newer["expiry_date"]}, REFRESH_ORDER)
    time.sleep(0.15)
    assert (await pool.acquire()).token == newer["access_token"]
    # a forced refresh after a 401 on a token someone already replaced: adopt theirs, no server call
    acct = pool.get(DEFAULT)
    acct._creds = {**acct._creds, "access_token": old}  # we still hold the old one
    assert (await pool.refreshed(DEFAULT)).token == newer["access_token"]
    assert srv.stats()["refresh_calls"] == 0
    # a forced refresh of the token in the file itself goes to the server
    cred = await pool.refreshed(DEFAULT)
    assert cred.token != newer["access_token"] and srv.stats()["refresh_calls"] == 1
    pool.close()


KILL_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from qwen_gateway.upstream.pool.pool import AccountPool
    from qwen_gateway.settings.auth import AuthSettings
    s = AuthSettings.from_env(qwen_dir=Path(sys.argv[1]), state_dir=Path(sys.argv[2]), oauth_base_url=sys.argv[3])
    pool = AccountPool.from_settings(s)
    print("refreshing", flush=True)
    asyncio.run(pool.acquire())
""")


async def test_sigkill_before_the_server_answers_leaves_a_usable_login_with_rotation(srv, settings, tmp_path):
    """Killed while the server still holds the refresh: the file keeps the old, complete login; the next
    process breaks the stale lock and refreshes with it before the server has used it up."""
    srv.switches(refresh_delay_ms=5000, rotate_refresh_token=True)
    old, old_rt, path = seed(srv, settings, expires_in=5)
    before = path.read_bytes()
    p = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(settings.qwen_dir),
                          str(tmp_path / "killed"), srv.url], stdout=subprocess.PIPE, text=True, env=CLEAN_ENV)
    try:
        assert p.stdout.readline().strip() == "refreshing"
        lock = path.with_suffix(".lock")
        deadline = time.monotonic() + 10
        while not srv.requests("/api/v1/oauth2/token") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lock.exists() and srv.requests("/api/v1/oauth2/token")  # mid-refresh: lock held, request open
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
    creds = read_creds(path)  # parses, complete, the old login
    assert path.read_bytes() == before and creds["access_token"] == old and creds["refresh_token"] == old_rt
    assert lock.exists()  # the killed process could not remove it
    assert not [f for f in path.parent.iterdir() if ".tmp." in f.name]
    srv.switches(refresh_delay_ms=0)
    # 10 s later (qwen-code's LOCK_TIMEOUT_MS, the default here) the next process breaks the stale lock
    os.utime(lock, (time.time() - 10.5, time.time() - 10.5))
    nxt = spawn(settings, tmp_path / "next", time.time())
    out, err = nxt.communicate(timeout=60)
    result = json.loads(out.splitlines()[-1])
    assert "token" in result, (result, err)
    creds = read_creds(path)
    assert result["token"] not in (old, None) and creds["access_token"] == result["token"]
    assert srv.accepts(result["token"]) and creds["refresh_token"] != old_rt  # rotated, and the new one saved
    assert not lock.exists() and not [f for f in path.parent.iterdir() if ".stale." in f.name]
    with pytest.raises(oauth.RefreshRejected):  # rotation is on: the old refresh token is used up
        await oauth.refresh(settings, old_rt)
    assert (await oauth.refresh(settings, creds["refresh_token"]))["access_token"]  # the saved one works


TRAP_SCRIPT = textwrap.dedent("""
    import asyncio, os, signal, sys
    from pathlib import Path
    from qwen_gateway.auth import filelock, oauth, state
    from qwen_gateway.upstream.pool.pool import AccountPool
    from qwen_gateway.settings.auth import AuthSettings

    s = AuthSettings.from_env(qwen_dir=Path(sys.argv[1]), state_dir=Path(sys.argv[2]), oauth_base_url=sys.argv[3])
    replied = False
    real_refresh = oauth.refresh

    async def refresh(*args, **kwargs):
        global replied
        data = await real_refresh(*args, **kwargs)
        replied = True  # the server has rotated the refresh token: only our file knows the new one
        print("replied", flush=True)
        return data

    def kill_at(where, real):
        def trapped(*args, **kwargs):
            if replied:  # the first thing after the reply that is not writing the login: die here
                print("killed at " + where, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)
        return trapped

    oauth.refresh = refresh
    filelock.FileLock.release = kill_at("lock release", filelock.FileLock.release)
    state.AccountState.set = kill_at("state update", state.AccountState.set)
    state.AccountState.count_request = kill_at("request count", state.AccountState.count_request)
    asyncio.run(AccountPool.from_settings(s).acquire())
    print("not killed", flush=True)
""")


async def test_sigkill_right_after_a_rotating_refresh_keeps_the_new_login(srv, settings, tmp_path):
    """Killed at the first step after the server's reply: the rotated tokens are already on disk."""
    srv.switches(rotate_refresh_token=True)
    old, old_rt, path = seed(srv, settings, expires_in=5)
    p = subprocess.Popen([sys.executable, "-c", TRAP_SCRIPT, str(settings.qwen_dir), str(tmp_path / "killed"),
                          srv.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CLEAN_ENV)
    out, err = p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL, (out, err)
    assert out.splitlines() == ["replied", "killed at lock release"], (out, err)
    creds = read_creds(path)
    assert creds["access_token"] != old and creds["refresh_token"] != old_rt and srv.accepts(creds["access_token"])
    assert list(json.loads(path.read_text())) == list(REFRESH_ORDER) and stat.S_IMODE(path.stat().st_mode) == 0o600
    lock = path.with_suffix(".lock")
    assert lock.exists() and srv.stats()["refresh_calls"] == 1
    # the next process uses the saved login without a refresh (after breaking the dead process's lock)
    os.utime(lock, (time.time() - 10.5, time.time() - 10.5))
    nxt = spawn(settings, tmp_path / "next", time.time())
    out, err = nxt.communicate(timeout=60)
    assert json.loads(out.splitlines()[-1]) == {"token": creds["access_token"]}, err
    assert srv.stats()["refresh_calls"] == 1
    with pytest.raises(oauth.RefreshRejected):  # what the file held before is dead: only the write saved it
        await oauth.refresh(settings, old_rt)
    assert (await oauth.refresh(settings, creds["refresh_token"]))["access_token"]


HOLDER_SCRIPT = textwrap.dedent("""
    import os, sys, time, uuid
    fd = os.open(sys.argv[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.write(fd, str(uuid.uuid4()).encode())
    os.close(fd)
    print("held", flush=True)
    deadline = time.monotonic() + 60  # bounded: the test kills it long before
    while time.monotonic() < deadline:
        os.utime(sys.argv[1])  # a lock someone keeps touching is never stale
        time.sleep(0.2)
""")


async def test_a_healthy_account_is_served_while_another_process_holds_a_lock(srv, settings, monkeypatch):
    settings.lock_stale_s = 1.0
    old, _, path = seed(srv, settings, expires_in=5)  # due for a refresh
    key = srv.issue(kind="key")["access_token"]
    monkeypatch.setenv("EMU_KEY_K", key)
    Registry(settings).put({"name": "k", "kind": "key", "base_url": srv.url + "/v1", "key_env": "EMU_KEY_K"})
    holder = subprocess.Popen([sys.executable, "-c", HOLDER_SCRIPT, str(path.with_suffix(".lock"))],
                              stdout=subprocess.PIPE, text=True, env=CLEAN_ENV)
    try:
        assert holder.stdout.readline().strip() == "held"
        pool = AccountPool.from_settings(settings)
        t0 = time.monotonic()
        assert (await pool.acquire()).account == "k"
        first = time.monotonic() - t0
        t0 = time.monotonic()
        assert {(await pool.acquire()).account for _ in range(5)} == {"k"}
        later = time.monotonic() - t0
        assert first < 2.5 and later < 0.5, (first, later)  # refresh_wait_s (1 s), not qwen-code's 29 s lock wait
        assert pool.status()[0]["state"] == "refreshing" and srv.stats()["refresh_calls"] == 0
    finally:
        holder.kill()
        holder.wait(10)
    # the holder died: its lock goes stale after lock_stale_s, the refresh that waited goes through
    deadline = time.monotonic() + 20
    while pool.get(DEFAULT).refreshing and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert pool.status()[0]["state"] == "ok" and srv.stats()["refresh_calls"] == 1
    tokens = {(await pool.acquire()).token for _ in range(2)}
    assert key in tokens and read_creds(path)["access_token"] in tokens and old not in tokens
    pool.close()


async def test_a_held_lock_is_kept_fresh_during_a_slow_refresh(srv, settings):
    srv.switches(refresh_delay_ms=1200)
    settings.lock_stale_s = 0.6  # a heartbeat every 0.2 s keeps it younger than that
    seed(srv, settings, expires_in=5)
    pool = AccountPool.from_settings(settings)
    lock = settings.default_creds_path.with_suffix(".lock")
    task = asyncio.ensure_future(pool.acquire())
    ages = []
    for _ in range(10):
        await asyncio.sleep(0.1)
        if lock.exists():
            ages.append(time.time() - lock.stat().st_mtime)
    await task
    assert ages and max(ages) < 0.6 and pool.status()[0]["state"] == "ok"
    pool.close()


# ---- the pool: rotation, key accounts, reload ---------------------------------------------------------


async def test_quota_rotates_to_a_key_account_then_exhaustion(srv, settings):
    seed(srv, settings, expires_in=3600)
    key = srv.issue(kind="key")["access_token"]
    rc, out, err = run_cli(settings, "add-key", "b", "--base-url", srv.url + "/v1", "--key-env", "EMU_KEY_B",
                           "--model-map", "gpt-4o=qwen3-coder-plus", "o1=qwen3-max", "--default-model",
                           "qwen3-coder-plus", "--embeddings", env={"EMU_KEY_B": key})
    assert rc == 0 and key not in out + err, err
    os.environ["EMU_KEY_B"] = key
    try:
        pool = AccountPool.from_settings(settings)
        a = await pool.acquire()
        assert a.account == DEFAULT
        pool.report(a.account, "quota")
        b = await pool.acquire()
        assert (b.account, b.kind, b.token, b.base_url, b.default_model, b.embeddings) == \
            ("b", KEY, key, srv.url + "/v1", "qwen3-coder-plus", True)
        assert dict(b.model_map) == {"gpt-4o": "qwen3-coder-plus", "o1": "qwen3-max"} and srv.accepts(b.token)
        assert (await pool.acquire()).account == "b"  # the default is cooling down
        pool.report("b", "quota", retry_after=90)
        with pytest.raises(PoolExhausted) as e:
            await pool.acquire()
        assert abs(e.value.retry_at - (time.time() + 90)) < 5
        assert "default: quota exhausted" in str(e.value) and "b: quota exhausted" in str(e.value)
        assert {r["state"] for r in pool.status()} == {"cooling_down"}
        pool.close()
        again = AccountPool.from_settings(settings)  # cooldowns persist
        with pytest.raises(PoolExhausted):
            await again.acquire()
        again.close()
    finally:
        del os.environ["EMU_KEY_B"]
    fresh = AccountPool.from_settings(settings)
    with pytest.raises(AccountUnavailable, match="env var EMU_KEY_B is not set"):
        await fresh.get("b").credential()
    fresh.close()


async def test_pool_picks_up_new_accounts_by_itself(srv, settings):
    settings.accounts_check_s = 0
    pool = AccountPool.from_settings(settings)
    with pytest.raises(AccountUnavailable, match="qwen-auth login.*qwen-auth add-key"):
        await pool.acquire()
    srv.switches(auto_approve=True)
    assert run_cli(settings, "login", "--no-qr")[0] == 0
    assert (await pool.acquire()).account == DEFAULT  # the same pool object, no restart
    rc, _, _ = run_cli(settings, "add-key", "k", "--base-url", srv.url + "/v1", "--key-stdin", stdin="sk-abc\n")
    assert rc == 0
    acct = pool.get(DEFAULT)
    pool.reload()
    assert pool.names() == [DEFAULT, "k"] and pool.get(DEFAULT) is acct  # unchanged accounts keep their state
    assert {(await pool.acquire()).account for _ in range(2)} == {DEFAULT, "k"}
    pool.close()


# ---- remote login ----------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_remote_login_initiate_and_poll(srv, settings):
    clock = Clock()
    logged_in = []
    remote = RemoteLogin(settings, on_success=logged_in.append, clock=clock)
    started = await remote.initiate(None)
    assert set(started) == {"device_code_id", "user_code", "verification_uri", "verification_uri_complete",
                            "expires_in", "interval", "account"}
    assert started["account"] == DEFAULT and started["expires_in"] == 1800
    assert f"user_code={started['user_code']}" in started["verification_uri_complete"]
    assert len(started["device_code_id"]) >= 20
    sid = started["device_code_id"]
    assert (await remote.poll(sid))["status"] == "pending"
    calls = srv.stats()["token_calls"]
    srv.admin("POST", "approve", {"user_code": started["user_code"]})
    assert (await remote.poll(sid))["status"] == "pending"  # too soon: answered locally
    assert srv.stats()["token_calls"] == calls
    clock.t += 2
    done = await remote.poll(sid)
    assert done["status"] == "success" and done["account"] == DEFAULT and done["expires_at"].endswith("Z")
    assert logged_in == [DEFAULT] and await remote.poll(sid) == done  # idempotent
    creds = json.loads(settings.default_creds_path.read_text())
    assert list(creds) == list(LOGIN_ORDER) and srv.accepts(creds["access_token"])
    assert stat.S_IMODE(settings.default_creds_path.stat().st_mode) == 0o600
    verifier_like = [v for v in started.values() if isinstance(v, str) and len(v) == 43]
    assert not verifier_like
    pool = AccountPool.from_settings(settings)
    assert (await pool.acquire()).token == creds["access_token"]
    pool.close()


async def test_remote_login_named_account_errors_and_expiry(srv, settings):
    clock = Clock()
    remote = RemoteLogin(settings, clock=clock)
    srv.switches(slow_down=1, slow_down_status=400)
    work = await remote.initiate("work")
    assert work["account"] == "work"
    r = await remote.poll(work["device_code_id"])
    assert r == {"status": "pending", "interval": 3.0, "account": "work"}  # slow_down honoured
    srv.admin("POST", "approve", {"user_code": work["user_code"]})
    clock.t += 3
    assert (await remote.poll(work["device_code_id"]))["status"] == "success"
    assert Registry(settings).find(Registry(settings).load(), "work")["kind"] == "oauth"
    assert settings.creds_path("work").exists()
    denied = await remote.initiate("other")
    srv.admin("POST", "deny", {"user_code": denied["user_code"]})
    r = await remote.poll(denied["device_code_id"])
    assert r["status"] == "error" and r["error"] == "access_denied" and not settings.creds_path("other").exists()
    late = await remote.initiate(None)
    clock.t += 1801
    assert (await remote.poll(late["device_code_id"]))["status"] == "error"
    assert (await remote.poll("made-up"))["error"] == "unknown_id"
    with pytest.raises(RemoteLoginError) as e:
        await remote.initiate("../etc")
    assert e.value.status == 400
    Registry(settings).put({"name": "keyed", "kind": "key", "base_url": "http://h/v1", "key_env": "K"})
    with pytest.raises(RemoteLoginError) as e:
        await remote.initiate("keyed")
    assert e.value.status == 409
    srv.admin("POST", "fault", {"kind": "oauth500"})
    with pytest.raises(RemoteLoginError) as e:
        await remote.initiate(None)
    assert e.value.status == 502


async def test_state_survives_in_sqlite(srv, settings):
    seed(srv, settings, expires_in=3600)
    pool = AccountPool.from_settings(settings)
    for _ in range(3):
        cred = await pool.acquire()
        pool.report(cred.account, "ok")
    pool.close()
    db = AccountState(settings.state_db_path)
    assert db.requests_today(DEFAULT) == 3
    db.close()
    rc, out, _ = run_cli(settings, "status", "--json")
    assert json.loads(out)[0]["requests_today"] == 3
    assert stat.S_IMODE(settings.state_db_path.stat().st_mode) == 0o600
