"""auth/ against the real Qwen emulator (a subprocess): device login with QR, refresh, single flight,
the lock-file protocol across processes, SIGKILL mid-refresh, rotation, key accounts, the CLI, remote login."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from qwen_gateway.auth import oauth
from qwen_gateway.auth.names import DEFAULT
from qwen_gateway.auth.registry import Registry
from qwen_gateway.auth.base import KEY, OAUTH, AccountUnavailable
from qwen_gateway.auth.credfile import LOGIN_ORDER, REFRESH_ORDER, read_creds, write_creds
from qwen_gateway.auth.pool import AccountPool, PoolExhausted
from qwen_gateway.auth.remote import RemoteLogin, RemoteLoginError
from qwen_gateway.auth.settings import AuthSettings
from qwen_gateway.auth.state import AccountState
from helpers.procs import Emulator

ROOT = Path(__file__).resolve().parent.parent
CLEAN_ENV = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}


class Server(Emulator):
    """The session's emulator process (conftest), with the look-ups these tests use."""

    def requests(self, path: str | None = None) -> list[dict]:
        return [r for r in super().requests() if path is None or r["path"] == path]

    def issue(self, expires_in: float = 3600, kind: str = "oauth") -> dict:
        return self.admin("POST", "tokens", {"expires_in": expires_in, "kind": kind})

    def accepts(self, token: str) -> bool:
        return self.http.get("/v1/models", headers={"authorization": f"Bearer {token}"}).status_code == 200


@pytest.fixture
def srv(emu) -> Server:
    return Server(emu.proc, emu.port)


@pytest.fixture
def settings(tmp_path, srv) -> AuthSettings:
    return AuthSettings.from_env(qwen_dir=tmp_path / ".qwen", state_dir=tmp_path / "state",
                                 oauth_base_url=srv.url, default_api_base=srv.url + "/v1")


def seed(srv: Server, settings: AuthSettings, *, expires_in: float, name: str | None = None,
         file_expires_in: float | None = None) -> tuple[str, str, Path]:
    """A login the emulator knows, written exactly as qwen-code writes it."""
    issued = srv.issue(max(expires_in, 1))
    path = settings.creds_path(name)
    expiry = int((time.time() + (expires_in if file_expires_in is None else file_expires_in)) * 1000)
    write_creds(path, {"access_token": issued["access_token"], "refresh_token": issued["refresh_token"],
                       "token_type": "Bearer", "resource_url": srv.url, "expiry_date": expiry}, LOGIN_ORDER)
    return issued["access_token"], issued["refresh_token"], path


def cli(settings: AuthSettings, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "qwen_gateway.auth.cli", "--qwen-dir", str(settings.qwen_dir), "--state-dir",
                             str(settings.state_dir), "--oauth-base-url", settings.oauth_base_url,
                             "--api-base", settings.default_api_base, *args],
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**CLEAN_ENV, **(env or {})})


def run_cli(settings: AuthSettings, *args: str, stdin: str | None = None, env: dict | None = None):
    p = cli(settings, *args, env=env)
    out, err = p.communicate(stdin, timeout=60)
    return p.returncode, out, err


def read_until(stream, marker: str, limit: float = 20) -> str:
    seen = ""
    deadline = time.monotonic() + limit
    while marker not in seen:
        line = stream.readline()
        assert line and time.monotonic() < deadline, f"no {marker!r} in {seen!r}"
        seen += line
    return seen


# ---- device login ----------------------------------------------------------------------------------------


def test_cli_device_login_with_qr_writes_qwen_codes_file(srv, settings):
    p = cli(settings, "login")
    shown = read_until(p.stderr, "Waiting for approval")
    code = re.search(r"User code: (\w+)", shown).group(1)
    assert f"user_code={code}" in shown and "Qwen OAuth Device Authorization" in shown
    qr_lines = [ln for ln in shown.splitlines() if set(ln.strip()) and set(ln.strip()) <= set("█▀▄ \xa0")]
    assert len(qr_lines) > 10  # a QR code was drawn
    srv.admin("POST", "approve", {"user_code": code})
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    path = settings.default_creds_path
    raw = path.read_text()
    creds = json.loads(raw)
    assert list(creds) == list(LOGIN_ORDER) and raw == json.dumps(creds, indent=2) and not raw.endswith("\n")
    assert creds["token_type"] == "Bearer" and creds["resource_url"] == srv.url
    assert abs(creds["expiry_date"] - (time.time() + 3600) * 1000) < 60_000
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert srv.accepts(creds["access_token"])
    assert creds["access_token"] not in shown + out + err and creds["refresh_token"] not in shown + out + err
    assert "Logged in: account default" in out
    # the wire: form-encoded like encodeURIComponent, JSON accepted, x-request-id on the device request only
    dev = srv.requests("/api/v1/oauth2/device/code")[0]
    assert dev["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert dev["headers"]["accept"] == "application/json" and uuid.UUID(dev["headers"]["x-request-id"])
    assert dev["body"]["scope"] == "openid profile email model.completion"
    assert dev["body"]["code_challenge_method"] == "S256" and len(dev["body"]["code_challenge"]) == 43
    assert dev["raw_body_len"] == len(urlencode(dev["body"], quote_via=quote))  # %20, not +
    polls = srv.requests("/api/v1/oauth2/token")
    assert polls and all("x-request-id" not in r["headers"] for r in polls)
    assert polls[-1]["body"]["grant_type"] == "urn:ietf:params:oauth:grant-type:device_code"
    assert len(polls[-1]["body"]["code_verifier"]) == 43


def test_cli_add_extra_account_then_list(srv, settings):
    srv.switches(auto_approve=True)
    rc, out, err = run_cli(settings, "add", "work", "--no-qr")
    assert rc == 0, err
    path = settings.creds_path("work")
    assert path.name == "oauth_creds_work.json" and list(json.loads(path.read_text())) == list(LOGIN_ORDER)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Registry(settings).find(Registry(settings).load(), "work") == {"name": "work", "kind": "oauth"}
    assert not settings.default_creds_path.exists()
    rc, out, _ = run_cli(settings, "list")
    assert rc == 0 and re.search(r"work\s+oauth\s+ok\s+\d{4}-\d\d-\d\d \d\d:\d\d UTC\s+0", out), out


@pytest.mark.parametrize("action,exit_code,message", [("deny", 2, "access_denied"),
                                                      ("expire", 3, "expired_token")])
def test_cli_login_denied_or_expired(srv, settings, action, exit_code, message):
    p = cli(settings, "login", "--no-qr")
    code = re.search(r"User code: (\w+)", read_until(p.stderr, "User code:")).group(1)
    srv.admin("POST", action, {"user_code": code})
    _, err = p.communicate(timeout=30)
    assert p.returncode == exit_code and message in err
    assert not settings.default_creds_path.exists()


def test_cli_login_with_the_oauth_server_down(srv, settings):
    srv.admin("POST", "fault", {"kind": "oauth500"})
    rc, _, err = run_cli(settings, "login")
    assert rc == 4 and "Device authorization failed: 500" in err
    rc, _, err = run_cli(settings, "--oauth-base-url", "http://127.0.0.1:9", "login")
    assert rc == 4 and "cannot reach" in err


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
    body = srv.requests("/api/v1/oauth2/token")[0]["body"]
    assert body == {"grant_type": "refresh_token", "refresh_token": old_rt,
                    "client_id": "f0304373b74a44d2b584a3fb70ca9e56"}
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
    sys.path.insert(0, {root!r})
    from pathlib import Path
    from qwen_gateway.auth.pool import AccountPool
    from qwen_gateway.auth.settings import AuthSettings
    qwen_dir, state_dir, url, start_at = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    s = AuthSettings.from_env(qwen_dir=Path(qwen_dir), state_dir=Path(state_dir), oauth_base_url=url)
    pool = AccountPool.from_settings(s)
    print("ready", flush=True)
    time.sleep(max(0.0, start_at - time.time()))
    try:
        cred = asyncio.run(pool.acquire())
        print(json.dumps({{"token": cred.token}}), flush=True)
    except Exception as e:
        print(json.dumps({{"error": str(e)}}), flush=True)
""")


def spawn(settings: AuthSettings, state_dir: Path, start_at: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PROC_SCRIPT.format(root=str(ROOT)), str(settings.qwen_dir),
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
    sys.path.insert(0, {root!r})
    from pathlib import Path
    from qwen_gateway.auth.pool import AccountPool
    from qwen_gateway.auth.settings import AuthSettings
    s = AuthSettings.from_env(qwen_dir=Path(sys.argv[1]), state_dir=Path(sys.argv[2]), oauth_base_url=sys.argv[3])
    pool = AccountPool.from_settings(s)
    print("refreshing", flush=True)
    asyncio.run(pool.acquire())
""")


def test_sigkill_mid_refresh_leaves_a_valid_file_and_a_breakable_lock(srv, settings, tmp_path):
    # The emulator finishes the killed refresh server-side; without rotation the old refresh token stays
    # good, so the next process can refresh with what the file holds.
    srv.switches(refresh_delay_ms=3000, rotate_refresh_token=False)
    old, old_rt, path = seed(srv, settings, expires_in=5)
    before = path.read_bytes()
    p = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT.format(root=str(ROOT)), str(settings.qwen_dir),
                          str(tmp_path / "killed"), srv.url], stdout=subprocess.PIPE, text=True, env=CLEAN_ENV)
    assert p.stdout.readline().strip() == "refreshing"
    lock = path.with_suffix(".lock")
    deadline = time.monotonic() + 10
    while not srv.requests("/api/v1/oauth2/token") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lock.exists() and srv.requests("/api/v1/oauth2/token")  # mid-refresh: lock held, request open
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
    assert result["token"] not in (old, None) and read_creds(path)["access_token"] == result["token"]
    assert not lock.exists() and not [f for f in path.parent.iterdir() if ".stale." in f.name]


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


# ---- the CLI ---------------------------------------------------------------------------------------------


def test_cli_status_and_list_show_no_secrets(srv, settings):
    token, rt, _ = seed(srv, settings, expires_in=3600)
    rc, out, err = run_cli(settings, "add-key", "ds", "--preset", "dashscope-intl", "--key-stdin",
                           stdin="sk-very-secret-stored\n")
    assert rc == 0 and "sk-very-secret-stored" not in out + err
    assert "https://dashscope-intl.aliyuncs.com/compatible-mode/v1" in out and "qwen3-coder-plus" in out
    rc, out, err = run_cli(settings, "add-key", "cp", "--preset", "coding-plan", "--key-env", "CP_KEY",
                           env={"CP_KEY": "sk-sp-secret-env"})
    assert rc == 0
    reg = settings.accounts_path
    assert stat.S_IMODE(reg.stat().st_mode) == 0o600 and "sk-very-secret-stored" in reg.read_text()
    assert "sk-sp-secret-env" not in reg.read_text()  # by reference only
    secrets_ = (token, rt, "sk-very-secret-stored", "sk-sp-secret-env")
    outputs = {}
    for args in (("status",), ("status", "--json"), ("list",), ("list", "--json")):
        rc, out, err = run_cli(settings, *args, env={"CP_KEY": "sk-sp-secret-env"})
        assert rc == 0, err
        assert not any(s in out + err for s in secrets_), args
        outputs[args] = out
    rows = {r["name"]: r for r in json.loads(outputs[("status", "--json")])}
    assert set(rows) == {"default", "ds", "cp"}
    assert rows["default"]["state"] == "ok" and rows["default"]["base_url"] == srv.url + "/v1"
    assert rows["ds"]["base_url"] == "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"
    assert rows["cp"]["base_url"] == "https://coding.dashscope.aliyuncs.com/v1" and rows["cp"]["key"] == "$CP_KEY"
    for r in rows.values():
        assert {"name", "kind", "state", "base_url", "expires_at", "cooldown_until", "requests_today",
                "last_error"} <= set(r)
    assert set(json.loads(outputs[("list", "--json")])[0]) == {"name", "kind", "state", "expires_at",
                                                                "requests_today"}
    assert "ACCOUNT" in outputs[("status",)] and "dashscope-intl" in outputs[("status",)]


def test_cli_key_rules(srv, settings):
    rc, _, err = run_cli(settings, "add-key", "x", "--base-url", "http://h/v1", "--key-env", "sk-abc-123-secret")
    assert rc == 1 and "sk-abc-123-secret" not in err and "NAME of an environment variable" in err
    rc, _, err = run_cli(settings, "add-key", "x", "--base-url", "http://h/v1")  # no key source
    assert rc == 1
    rc, _, err = run_cli(settings, "add-key", "x", "--key-env", "K")  # no URL
    assert rc == 1 and "--base-url" in err
    rc, _, err = run_cli(settings, "add-key", "../x", "--base-url", "http://h/v1", "--key-env", "K")
    assert rc == 1 and "invalid account name" in err
    rc, _, err = run_cli(settings, "add-key", "x", "--base-url", "http://h/v1", "--key-stdin", stdin="")
    assert rc == 1 and "no key" in err
    rc, _, err = run_cli(settings, "add-key", "x", "--base-url", "http://h/v1", "--key-env", "K", "--model-map", "nope")
    assert rc == 1 and "ALIAS=MODEL" in err
    assert not settings.accounts_path.exists()  # nothing was written by any of these
    rc, out, _ = run_cli(settings, "--help")
    assert rc == 0 and "exit codes" in out and "login denied" in out


def test_cli_remove(srv, settings):
    seed(srv, settings, expires_in=3600)
    seed(srv, settings, expires_in=3600, name="work")
    Registry(settings).put({"name": "work", "kind": "oauth"})
    assert run_cli(settings, "remove", "default")[0] == 0
    assert settings.default_creds_path.exists()  # qwen-code's file: detached, never deleted
    names = [r["name"] for r in json.loads(run_cli(settings, "status", "--json")[1])]
    assert names == ["work"]
    rc, out, _ = run_cli(settings, "remove", "work")
    assert rc == 0 and settings.creds_path("work").exists() and "--force" in out
    assert run_cli(settings, "remove", "nobody")[0] == 5
    srv.switches(auto_approve=True)
    assert run_cli(settings, "login", "--no-qr")[0] == 0  # attaches the default again
    assert [r["name"] for r in json.loads(run_cli(settings, "list", "--json")[1])] == ["default"]
    assert run_cli(settings, "remove", "default", "--force")[0] == 0
    assert not settings.default_creds_path.exists()


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
