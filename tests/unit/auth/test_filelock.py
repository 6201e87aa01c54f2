"""A crash mid-refresh never costs a login (issue #30 item 5): a process SIGKILLed while it holds the refresh lock,
or between writing the refreshed login to its temp file and renaming it over the login file. The next process
(a gateway, or the pool in a child process) must neither wait in silence on the dead holder's lock nor lose the
rotated refresh token the dead process left in `oauth_creds.json.tmp.<uuid>`. What qwen-code's own lock file
gets (a holder we cannot know to be dead) is still its 10 s staleness rule, said in the log. Without a process:
which temp files are adopted, tests/unit/auth/test_stranded.py; the lock protocol in one process, at the end."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from qwen_gateway.auth import filelock, oauth
from qwen_gateway.auth.credfile import REFRESH_ORDER, dump_creds, read_creds
from qwen_gateway.auth.filelock import FileLock, LockTimeout
from helpers.auth_env import CLEAN_ENV, Server, seed, settings_for
from helpers.procs import write_creds as write_qwen_code_creds

LOCK_LINE = "left by a process that ended while holding it"


def login(expiry_s: float, *, access: str = "at-old", refresh: str = "rt-old", resource_url: str = "portal.qwen.ai"):
    return {"access_token": access, "token_type": "Bearer", "refresh_token": refresh, "resource_url": resource_url,
            "expiry_date": int((time.time() + expiry_s) * 1000)}


def temp_of(path: Path, creds: dict | str, *, mode: int = 0o600, age_s: float = 0.0) -> Path:
    """A temp file as credfile.atomic_write (and qwen-code's atomicWriteFile) names and writes it."""
    tmp = path.with_name(f"{path.name}.tmp.{uuid.uuid4()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        f.write(creds if isinstance(creds, str) else dump_creds(creds, REFRESH_ORDER))
    os.chmod(tmp, mode)
    if age_s:
        os.utime(tmp, (time.time() - age_s, time.time() - age_s))
    return tmp


# ---- the lock of a process that died (real processes, no server) ------------------------------------------------


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from qwen_gateway.auth.filelock import FileLock
    lock = FileLock(Path(sys.argv[1]))
    lock.acquire()
    print("held", flush=True)
    time.sleep(60)  # bounded: the test kills it long before
""")


def hold(lock: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], stdout=subprocess.PIPE, text=True, env=CLEAN_ENV)
    assert p.stdout.readline().strip() == "held"
    return p


def test_the_lock_of_a_killed_gateway_is_removed_at_once_with_one_line(tmp_path, caplog, monkeypatch):
    lock = tmp_path / "oauth_creds.lock"
    p = hold(lock)
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    assert lock.exists()  # the killed process could not remove it; it is young: the staleness rule cannot help
    caplog.set_level(logging.INFO, logger="qwen")
    slept: list[float] = []
    monkeypatch.setattr(filelock.time, "sleep", slept.append)
    mine = FileLock(lock, attempts=2)  # the removal takes an attempt (as a stale break does), then it is ours
    mine.acquire()
    assert slept == []  # no wait at all
    assert mine.held and len(lock.read_text()) == 36
    lines = [r.getMessage() for r in caplog.records if LOCK_LINE in r.getMessage()]
    assert len(lines) == 1 and "oauth_creds.lock" in lines[0], [r.getMessage() for r in caplog.records]
    mine.release()
    assert not lock.exists() and not [f for f in tmp_path.iterdir() if ".stale." in f.name]


def test_the_lock_of_a_live_gateway_is_respected(tmp_path):
    lock = tmp_path / "oauth_creds.lock"
    p = hold(lock)
    try:
        held = lock.read_bytes()
        with pytest.raises(LockTimeout):
            FileLock(lock, attempts=3, first_delay=0.01).acquire()
        assert lock.read_bytes() == held  # neither broken nor replaced
    finally:
        p.kill()
        p.wait(10)


def test_a_lock_of_another_program_is_waited_for_and_said_once(tmp_path, caplog):
    """qwen-code holds no OS lock: its lock file's holder cannot be known dead, the staleness rule stays; the
    wait is said in one line, not in silence."""
    lock = tmp_path / "oauth_creds.lock"
    lock.write_text(str(uuid.uuid4()))  # qwen-code's lock, young
    caplog.set_level(logging.INFO, logger="qwen")
    with pytest.raises(LockTimeout):
        FileLock(lock, attempts=4, first_delay=0.01).acquire()
    said = [r.getMessage() for r in caplog.records if "oauth_creds.lock" in r.getMessage()]
    assert len(said) == 1 and "held by another program" in said[0] and "10 s" in said[0], said
    os.utime(lock, (time.time() - 11, time.time() - 11))
    caplog.clear()
    with FileLock(lock, attempts=2):
        pass
    said = [r.getMessage() for r in caplog.records if "oauth_creds.lock" in r.getMessage()]
    assert len(said) == 1 and "stale" in said[0], said


# ---- against the OAuth emulator -----------------------------------------------------------------------------------


@pytest.fixture
def srv(emu) -> Server:
    return Server(emu.proc, emu.port)


# A refresh that rotates the refresh token (of account argv[4], whose file is argv[5]), killed at the rename of
# its temp file over the file: the new tokens exist only in the temp file, the server has already used up the
# old refresh token.
KILL_AT_RENAME = textwrap.dedent("""
    import asyncio, os, signal, sys
    from pathlib import Path
    from qwen_gateway.upstream.pool.pool import AccountPool
    from qwen_gateway.settings.auth import AuthSettings

    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if ".tmp." in os.fspath(src) and os.fspath(dst).endswith(sys.argv[5]):
            print("killed before the rename", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst, *args, **kwargs)

    os.replace = replace
    s = AuthSettings.from_env(qwen_dir=Path(sys.argv[1]), state_dir=Path(sys.argv[2]), oauth_base_url=sys.argv[3],
                              web_auth_base_url=sys.argv[3], web_accounts=True)
    asyncio.run(AccountPool.from_settings(s).get(sys.argv[4]).credential())
    print("not killed", flush=True)
""")

# A refresh stuck inside the OAuth call, the lock held: killed there.
KILL_MID_REFRESH = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from qwen_gateway.auth import oauth
    from qwen_gateway.upstream.pool.pool import AccountPool
    from qwen_gateway.settings.auth import AuthSettings

    async def stuck(*args, **kwargs):
        print("refreshing", flush=True)
        await asyncio.sleep(60)  # bounded: the test kills it long before

    oauth.refresh = stuck
    s = AuthSettings.from_env(qwen_dir=Path(sys.argv[1]), state_dir=Path(sys.argv[2]), oauth_base_url=sys.argv[3])
    asyncio.run(AccountPool.from_settings(s).get("default").credential())
""")

NEXT = textwrap.dedent("""
    import asyncio, json, sys
    from pathlib import Path
    from qwen_gateway.upstream.pool.pool import AccountPool
    from qwen_gateway.settings.auth import AuthSettings
    s = AuthSettings.from_env(qwen_dir=Path(sys.argv[1]), state_dir=Path(sys.argv[2]), oauth_base_url=sys.argv[3])
    try:
        print(json.dumps({"token": asyncio.run(AccountPool.from_settings(s).acquire()).token}), flush=True)
    except Exception as e:
        print(json.dumps({"error": str(e)}), flush=True)
""")


def run_child(script: str, qwen_dir: Path, state_dir: Path, url: str, until: str, *more: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", script, str(qwen_dir), str(state_dir), url, *more],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CLEAN_ENV)
    line = p.stdout.readline().strip()
    if line != until:
        p.kill()
        out, err = p.communicate(timeout=10)
        raise AssertionError((line, out, err))
    return p


def kill_at_the_rename(srv: Server, qwen_dir: Path, state_dir: Path) -> tuple[Path, dict]:
    """The login file (old, whole) and the stranded temp file's login (new) after the kill."""
    srv.switches(rotate_refresh_token=True)
    p = run_child(KILL_AT_RENAME, qwen_dir, state_dir, srv.url, "killed before the rename", "default",
                  "oauth_creds.json")
    p.communicate(timeout=30)
    assert p.returncode == -signal.SIGKILL
    temps = [f for f in qwen_dir.iterdir() if ".tmp." in f.name]
    assert len(temps) == 1 and srv.stats()["refresh_calls"] == 1
    return temps[0], read_creds(temps[0])


@pytest.mark.e2e
async def test_killed_before_the_rename_the_next_process_keeps_the_login(srv, tmp_path):
    """The pool in a new process adopts the stranded rotated login instead of refreshing with the used-up token
    (the dead process's lock is aged past the staleness rule here: this is about the temp file alone)."""
    settings = settings_for(tmp_path, srv)
    old, old_rt, path = seed(srv, settings, expires_in=5)  # due for a refresh
    tmp, new = kill_at_the_rename(srv, settings.qwen_dir, tmp_path / "killed")
    assert read_creds(path)["refresh_token"] == old_rt and new["refresh_token"] != old_rt
    with pytest.raises(oauth.RefreshRejected):  # what the login file holds is used up: only the temp file has it
        await oauth.refresh(settings, old_rt)
    assert srv.stats()["refresh_calls"] == 2  # the killed process's, and that refused one
    lock = path.with_suffix(".lock")
    if lock.exists():
        os.utime(lock, (time.time() - 11, time.time() - 11))
    nxt = subprocess.run([sys.executable, "-c", NEXT, str(settings.qwen_dir), str(tmp_path / "next"), srv.url],
                         capture_output=True, text=True, timeout=60, env=CLEAN_ENV)
    assert json.loads(nxt.stdout.splitlines()[-1]) == {"token": new["access_token"]}, nxt.stderr
    assert srv.stats()["refresh_calls"] == 2  # none more: the stranded login was enough
    assert read_creds(path) == new and not tmp.exists()
    assert "adopted" in nxt.stderr and tmp.name in nxt.stderr
    assert (await oauth.refresh(settings, new["refresh_token"]))["access_token"]  # the adopted one works


def gateway_env(tmp_path: Path, srv: Server, **more: str) -> dict[str, str]:
    return {"QWEN_DIR": str(tmp_path / ".qwen"), "QWEN_GATEWAY_HOME": str(tmp_path / "state"),
            "QWEN_OAUTH_BASE_URL": srv.url, "HOME": str(tmp_path), **more}


def ask(gw, text: str) -> str:
    import openai
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=30)
    return c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": text}]) \
        .choices[0].message.content


def qwen_code_login(srv: Server, qwen_dir: Path, expires_in: float) -> tuple[str, str]:
    issued = srv.issue(3600)
    write_qwen_code_creds(qwen_dir, access_token=issued["access_token"], refresh_token=issued["refresh_token"],
                          resource_url=srv.url, expires_in=expires_in)
    return issued["access_token"], issued["refresh_token"]


@pytest.mark.e2e
def test_a_gateway_after_a_process_killed_holding_the_lock(srv, tmp_path, make_gateway):
    """No wait on the dead holder's lock: with the staleness rule pushed to 10 min, only knowing that the holder
    is dead lets the refresh through."""
    old, _ = qwen_code_login(srv, tmp_path / ".qwen", expires_in=5)  # due for a refresh
    p = run_child(KILL_MID_REFRESH, tmp_path / ".qwen", tmp_path / "killed", srv.url, "refreshing")
    lock = tmp_path / ".qwen" / "oauth_creds.lock"
    assert lock.exists()
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=10)
    gw = make_gateway("after", env=gateway_env(tmp_path, srv, QWEN_LOCK_STALE_S="600"))
    assert ask(gw, "after the crash") == "Echo: after the crash"
    assert srv.stats()["refresh_calls"] == 1
    token = read_creds(tmp_path / ".qwen" / "oauth_creds.json")["access_token"]
    assert token != old and srv.chat_requests()[-1]["headers"]["authorization"] == f"Bearer {token}"
    said = [line for line in gw.log().splitlines() if LOCK_LINE in line]
    assert len(said) == 1 and "oauth_creds.lock" in said[0], gw.log()
    assert not lock.exists()


@pytest.mark.e2e
def test_a_gateway_after_a_process_killed_before_the_rename(srv, tmp_path, make_gateway):
    """Killed at the worst moment (the server rotated the refresh token, the new one only in the temp file, the
    lock still held): the next gateway serves at once with the stranded login, adopted, no new login needed."""
    old, old_rt = qwen_code_login(srv, tmp_path / ".qwen", expires_in=5)
    tmp, new = kill_at_the_rename(srv, tmp_path / ".qwen", tmp_path / "killed")
    expected = tmp.read_bytes()
    gw = make_gateway("after", env=gateway_env(tmp_path, srv, QWEN_LOCK_STALE_S="600"))
    assert ask(gw, "kept") == "Echo: kept"
    assert srv.stats()["refresh_calls"] == 1  # the killed process's refresh only
    assert srv.chat_requests()[-1]["headers"]["authorization"] == f"Bearer {new['access_token']}"
    path = tmp_path / ".qwen" / "oauth_creds.json"
    assert path.read_bytes() == expected and not tmp.exists()  # qwen-code sees the new login, byte for byte
    assert not (tmp_path / ".qwen" / "oauth_creds.lock").exists()
    log = gw.log()
    assert "adopted" in log and tmp.name in log and LOCK_LINE in log, log
    for secret in (old, old_rt, new["access_token"], new["refresh_token"]):
        assert secret not in log


# ---- a web session (the same rename, the same risk: auth.qwen.ai rotates the refresh cookie) ----------------------



@pytest.mark.e2e
async def test_a_web_session_killed_before_the_rename_is_adopted_not_lost(srv, tmp_path):
    from qwen_gateway.auth import web_cookies as wc, web_session as ws
    from qwen_gateway.accounts import WEB
    from qwen_gateway.upstream.pool.pool import AccountPool
    from qwen_gateway.auth.registry import Registry
    from qwen_gateway.settings.auth import AuthSettings

    settings = AuthSettings.from_env(qwen_dir=tmp_path / ".qwen", state_dir=tmp_path / "state",
                                     web_auth_base_url=srv.url, web_accounts=True)
    minted = srv.admin("POST", "web/session", {"expires_in": 30})  # within a minute of expiry: a refresh is due
    path = settings.web_session_path("chat")
    ws.save(path, ws.new_session(minted["access_token"], wc.keep(wc.parse_header(minted["cookie_header"])),
                                 user_agent="Mozilla/5.0", bx={}))
    Registry(settings).put({"name": "chat", "kind": WEB})
    p = run_child(KILL_AT_RENAME, settings.qwen_dir, settings.state_dir, srv.url, "killed before the rename", "chat",
                  "chat.json")
    p.communicate(timeout=30)
    assert p.returncode == -signal.SIGKILL
    tmp, = [f for f in path.parent.iterdir() if ".tmp." in f.name]
    new = ws.load(tmp)
    assert ws.load(path).token == minted["access_token"] and new.token != minted["access_token"]
    assert srv.admin("GET", "web/state")["stats"]["refresh_calls"] == 1  # the cookie in chat.json is used up now
    lock = path.with_suffix(".lock")
    assert lock.exists()  # the killed process's: removed at once by the next one (its OS lock died with it)
    pool = AccountPool.from_settings(settings)
    cred = await pool.get("chat").credential()
    assert cred.token == new.token and srv.admin("GET", "web/state")["stats"]["refresh_calls"] == 1
    assert ws.load(path) == new and not tmp.exists() and not lock.exists()
    pool.close()


def test_a_failed_acquire_never_keeps_the_os_lock(tmp_path, monkeypatch):
    """Whatever stops an acquire (here the lock file cannot be created), the OS lock goes with it: a lock that
    would otherwise stay held for the life of this process, and hold up every other gateway."""
    lock = tmp_path / "oauth_creds.lock"
    real_open = os.open

    def refuse(path, *args, **kwargs):
        if os.fspath(path) == os.fspath(lock):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(filelock.os, "open", refuse)
    with pytest.raises(PermissionError):
        FileLock(lock, attempts=1).acquire()
    monkeypatch.setattr(filelock.os, "open", real_open)
    with FileLock(lock, attempts=1):  # at once: nothing of the failed attempt is held
        pass
    assert not list(tmp_path.iterdir())


# ---- the lock protocol, in one process ----------------------------------------------------------------


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
