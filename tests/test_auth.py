"""Accounts against the real emulator: device login, refresh, single flight, locks, rotation."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from qwen_gateway.auth.oauth_account import OAuthAccount
from qwen_gateway.auth.base import AccountUnavailable
from qwen_gateway.auth.credfile import LOGIN_ORDER, REFRESH_ORDER, FileLock, read_creds
from qwen_gateway.auth.pool import AccountPool, PoolExhausted
from qwen_gateway.auth.settings import AuthSettings
from qwen_gateway.auth.state import AccountState
from helpers.procs import BIN, ROOT, write_creds


@pytest.fixture
def settings(tmp_path, emu) -> AuthSettings:
    return AuthSettings.from_env(qwen_dir=tmp_path / ".qwen", state_dir=tmp_path / "state",
                                 oauth_base_url=emu.url, default_api_base=emu.url + "/v1")


def seed_login(emu, settings, *, expires_in: float, name: str | None = None) -> tuple[str, str, Path]:
    issued = emu.admin("POST", "tokens", {"expires_in": max(expires_in, 1)})
    path = write_creds(settings.qwen_dir, access_token=issued["access_token"], refresh_token=issued["refresh_token"],
                       resource_url=emu.url, expires_in=expires_in, name=name)
    return issued["access_token"], issued["refresh_token"], path


def run_cli(settings, *args, stdin=None, env=None) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "qwen-auth"), "--qwen-dir", str(settings.qwen_dir), "--state-dir",
                             str(settings.state_dir), "--oauth-base-url", settings.oauth_base_url, *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def wait_user_code(proc: subprocess.Popen) -> tuple[str, str]:
    seen = ""
    while "User code:" not in seen:
        line = proc.stderr.readline()
        assert line, f"CLI ended early: {seen}"
        seen += line
    code = seen.split("User code:")[1].split()[0]
    return code, seen


def test_device_login_with_qr_writes_qwen_code_file(emu, settings):
    proc = run_cli(settings, "login")
    code, shown = wait_user_code(proc)
    assert f"user_code={code}" in shown
    emu.admin("POST", "approve", {"user_code": code})
    out, err = proc.communicate(timeout=30)
    qr = shown + err
    assert proc.returncode == 0, err
    assert "█" in qr or "▀" in qr or "▄" in qr  # a QR code was drawn
    path = settings.qwen_dir / "oauth_creds.json"
    raw = path.read_text()
    creds = json.loads(raw)
    assert list(creds) == list(LOGIN_ORDER) and not raw.endswith("\n") and raw == json.dumps(creds, indent=2)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    req = [r for r in emu.requests() if r["path"] == "/api/v1/oauth2/device/code"][0]
    assert req["body"]["code_challenge_method"] == "S256" and req["headers"].get("x-request-id")
    assert creds["access_token"] not in out + err  # never printed


@pytest.mark.parametrize("action,exit_code", [("deny", 2), ("expire", 3)])
def test_device_login_denied_or_expired(emu, settings, action, exit_code):
    proc = run_cli(settings, "login")
    code, _ = wait_user_code(proc)
    emu.admin("POST", action, {"user_code": code})
    proc.communicate(timeout=30)
    assert proc.returncode == exit_code
    assert not (settings.qwen_dir / "oauth_creds.json").exists()


def test_slow_down_is_honoured(emu, settings):
    emu.switches(slow_down=1, slow_down_status=429, auto_approve=True)
    proc = run_cli(settings, "login")
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    polls = [r for r in emu.requests() if r["path"] == "/api/v1/oauth2/token"]
    assert len(polls) == 2


async def test_refresh_at_expiry_keeps_resource_url_and_rotates(emu, settings):
    emu.switches(refresh_omit_resource_url=True)
    old, old_rt, path = seed_login(emu, settings, expires_in=10)  # inside the 30 s buffer
    pool = AccountPool.from_settings(settings)
    cred = await pool.acquire()
    assert cred.token != old and cred.base_url == emu.url + "/v1"
    creds = read_creds(path)
    assert list(creds) == list(REFRESH_ORDER) and creds["resource_url"] == emu.url
    assert creds["refresh_token"] != old_rt
    assert emu.stats()["refresh_calls"] == 1


async def test_fifty_concurrent_requests_at_expiry_refresh_once(emu, settings):
    emu.switches(refresh_delay_ms=300)
    seed_login(emu, settings, expires_in=5)
    pool = AccountPool.from_settings(settings)
    creds = await asyncio.gather(*(pool.acquire() for _ in range(50)))
    assert len({c.token for c in creds}) == 1
    assert emu.stats()["refresh_calls"] == 1


TWO_PROCS = textwrap.dedent("""
    import asyncio, sys
    sys.path.insert(0, {root!r})
    from qwen_gateway.auth.pool import AccountPool
    from qwen_gateway.auth.settings import AuthSettings
    from pathlib import Path
    s = AuthSettings.from_env(qwen_dir=Path(sys.argv[1]), state_dir=Path(sys.argv[2]), oauth_base_url=sys.argv[3])
    print(asyncio.run(AccountPool.from_settings(s).acquire()).token)
""")


def test_two_processes_sharing_a_file_refresh_once(emu, settings, tmp_path):
    emu.switches(refresh_delay_ms=500)
    seed_login(emu, settings, expires_in=5)
    script = TWO_PROCS.format(root=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", script, str(settings.qwen_dir), str(tmp_path / f"s{i}"),
                               emu.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    tokens = {o[0].strip() for o in outs}
    assert len(tokens) == 1 and emu.stats()["refresh_calls"] == 1
    assert read_creds(settings.qwen_dir / "oauth_creds.json")["access_token"] in tokens


async def test_dead_refresh_token_needs_login_and_file_untouched(emu, settings):
    path = write_creds(settings.qwen_dir, access_token="gone", refresh_token="dead-rt", resource_url=emu.url,
                       expires_in=-60)
    before = path.read_bytes()
    pool = AccountPool.from_settings(settings)
    with pytest.raises(AccountUnavailable) as e:
        await pool.acquire()
    assert e.value.needs_login and "qwen-auth login" in str(e.value)
    assert path.read_bytes() == before
    assert pool.status()[0]["state"] == "needs_login"
    # state survives a restart
    assert AccountPool.from_settings(settings).status()[0]["state"] == "needs_login"


KILLED = textwrap.dedent("""
    import asyncio, sys
    sys.path.insert(0, {root!r})
    from qwen_gateway.auth.pool import AccountPool
    from qwen_gateway.auth.settings import AuthSettings
    from pathlib import Path
    s = AuthSettings.from_env(qwen_dir=Path(sys.argv[1]), state_dir=Path(sys.argv[2]), oauth_base_url=sys.argv[3])
    print("refreshing", flush=True)
    asyncio.run(AccountPool.from_settings(s).acquire())
""")


async def test_sigkill_during_refresh_leaves_a_valid_file_and_a_breakable_lock(emu, settings, tmp_path):
    emu.switches(refresh_delay_ms=3000)
    old, _, path = seed_login(emu, settings, expires_in=5)
    p = subprocess.Popen([sys.executable, "-c", KILLED.format(root=str(ROOT)), str(settings.qwen_dir),
                          str(tmp_path / "k"), emu.url], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "refreshing"
    lock = path.with_suffix(".lock")
    deadline = time.monotonic() + 10
    while not lock.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lock.exists()
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    assert read_creds(path)["access_token"] == old  # the old, complete login
    assert lock.exists()  # left behind by the killed process
    emu.switches(refresh_delay_ms=0)
    settings.lock_stale_s = 0.5
    acct = OAuthAccount("default", path, settings, AccountState(tmp_path / "st.sqlite3"))
    os.utime(lock, (time.time() - 1, time.time() - 1))
    cred = await acct.credential()
    assert cred.token != old and read_creds(path)["access_token"] == cred.token and not lock.exists()


def test_lock_is_exclusive_and_never_parsed(tmp_path):
    lock_path = tmp_path / "oauth_creds.lock"
    lock_path.write_text('{"lockId": "from-an-old-qwen-code", "timestamp": 1}')  # PR #443-era content
    os.utime(lock_path, (time.time() - 60, time.time() - 60))
    with FileLock(lock_path):
        assert len(lock_path.read_text()) == 36  # a uuid, like qwen-code
        with pytest.raises(TimeoutError):
            FileLock(lock_path, attempts=2).acquire()
    assert not lock_path.exists()


async def test_rotation_on_quota_and_exhaustion(emu, settings, monkeypatch):
    seed_login(emu, settings, expires_in=3600)
    monkeypatch.setenv("EMU_KEY_B", emu.seed_token(kind="key"))
    assert run_cli(settings, "add-key", "b", "--base-url", emu.url + "/v1", "--key-env", "EMU_KEY_B").wait(20) == 0
    pool = AccountPool.from_settings(settings)
    first = await pool.acquire()
    pool.report(first.account, "quota")
    second = await pool.acquire()
    assert second.account != first.account
    pool.report(second.account, "quota", retry_after=120)
    with pytest.raises(PoolExhausted) as e:
        await pool.acquire()
    assert e.value.retry_at and e.value.retry_at <= time.time() + 121
    assert {r["state"] for r in pool.status()} == {"cooling_down"}


def test_cli_status_and_key_accounts_show_no_secrets(emu, settings):
    token, _, _ = seed_login(emu, settings, expires_in=3600)
    p = run_cli(settings, "add-key", "ds", "--preset", "dashscope-intl", "--key-stdin")
    out, err = p.communicate("sk-very-secret-key\n", timeout=20)
    assert p.returncode == 0 and "sk-very-secret-key" not in out + err
    reg = settings.state_dir / "accounts.json"
    assert stat.S_IMODE(reg.stat().st_mode) == 0o600
    p = run_cli(settings, "status")
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0 and "default" in out and "ds" in out and "dashscope-intl" in out
    assert token not in out + err and "sk-very-secret-key" not in out + err
    p = run_cli(settings, "status", "--json")
    rows = json.loads(p.communicate(timeout=20)[0])
    assert {r["name"] for r in rows} == {"default", "ds"}
    assert run_cli(settings, "remove", "default").wait(20) == 0
    assert (settings.qwen_dir / "oauth_creds.json").exists()  # detached, never deleted
