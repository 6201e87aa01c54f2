"""What OAuth logins and web sessions share (auth/refreshing.py): one refresh at a time however many requests
wait for it, the lock file held around it (qwen-code's), its failures turned into a transient AccountUnavailable
that the account's state shows, and a login a killed refresh left in a temp file adopted under the lock. On a
bare subclass: tests/unit/auth/test_oauth_account.py and test_oauth.py have the OAuth account's own."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import stat
import time

import pytest

from qwen_gateway.accounts import OAUTH, AccountUnavailable, Credential
from qwen_gateway.auth import refreshing
from qwen_gateway.auth.credfile import LOGIN_ORDER, read_creds, write_creds
from qwen_gateway.auth.filelock import FileLock
from qwen_gateway.auth.refreshing import RefreshedFileAccount
from qwen_gateway.auth.state import AccountState, RefreshLockTimeout
from qwen_gateway.auth.stranded import OAUTH_LOGIN
from qwen_gateway.storage.health import StateUnavailable


class Login(RefreshedFileAccount[str]):
    kind = OAUTH
    stranded_kind = OAUTH_LOGIN

    async def credential(self, *, force_refresh=False, refused=None) -> Credential:
        raise AssertionError("not asked here")

    def status(self) -> dict:
        return {"name": self.name}


class LockedState(AccountState):
    """A shared state whose refresh lock fails as `error` says."""

    error: Exception | None = None

    def refresh_lock(self, account):
        @contextlib.asynccontextmanager
        async def held():
            if self.error is not None:
                raise self.error
            yield
        return held()


@pytest.fixture
def state(tmp_path):
    s = LockedState(tmp_path / "state.sqlite3")
    yield s
    s.close()


@pytest.fixture
def login(tmp_path, settings, state) -> Login:
    return Login("work", tmp_path / ".qwen" / "oauth_creds_work.json", settings, state)


def creds(expiry_ms: int, token: str = "at") -> dict:
    return {"access_token": token, "refresh_token": "rt", "token_type": "Bearer", "resource_url": "portal.qwen.ai",
            "expiry_date": expiry_ms}


async def test_every_waiter_shares_one_refresh(login):
    started = 0
    release = asyncio.Event()

    async def refresh() -> str:
        nonlocal started
        started += 1
        await release.wait()
        return f"token {started}"

    waiters = [asyncio.ensure_future(login._single_flight(refresh)) for _ in range(5)]
    await asyncio.sleep(0)
    assert login.refreshing
    release.set()
    assert await asyncio.gather(*waiters) == ["token 1"] * 5
    assert started == 1 and not login.refreshing
    assert await login._single_flight(refresh) == "token 2"  # done: the next one starts anew


async def test_a_failed_refresh_fails_every_waiter_and_the_next_starts_anew(login):
    calls = 0

    async def refresh() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if calls == 1:
            raise AccountUnavailable("work: server said 500", transient=True)
        return "fresh"

    got = await asyncio.gather(*(login._single_flight(refresh) for _ in range(3)), return_exceptions=True)
    assert [str(e) for e in got] == ["work: server said 500"] * 3 and len({id(e) for e in got}) == 1
    assert await login._single_flight(refresh) == "fresh" and calls == 2


async def test_a_waiter_cancelled_leaves_the_refresh_running_for_the_others(login):
    release = asyncio.Event()

    async def refresh() -> str:
        await release.wait()
        return "done"

    first = asyncio.ensure_future(login._single_flight(refresh))
    second = asyncio.ensure_future(login._single_flight(refresh))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    assert login.refreshing
    release.set()
    assert await second == "done"
    assert first.cancelled()


async def test_the_lock_file_is_held_private_for_the_block_and_released_after(login):
    lock = login.lock_path
    assert lock.name == "oauth_creds_work.lock"
    lock.parent.mkdir(parents=True)
    async with login._locked():
        assert lock.exists() and stat.S_IMODE(lock.stat().st_mode) == 0o600
    assert not lock.exists()
    with pytest.raises(ValueError):
        async with login._locked():
            raise ValueError("the refresh failed")
    assert not lock.exists()  # released however the block ends


async def test_a_lock_another_program_holds_fails_the_refresh_for_a_while(login, state, monkeypatch):
    """qwen-code holding its lock file (not stale): after the attempts, a transient failure the state shows."""
    monkeypatch.setattr(refreshing, "FileLock", functools.partial(FileLock, attempts=1))
    login.lock_path.parent.mkdir(parents=True)
    login.lock_path.write_text("qwen-code's")
    before = time.monotonic()
    with pytest.raises(AccountUnavailable) as e:
        async with login._locked():
            raise AssertionError("never entered")
    assert str(e.value) == "work: Failed to acquire file lock for token refresh: timeout exceeded"
    assert e.value.transient and not e.value.needs_login
    assert state.get("work")["last_error"] == str(e.value)
    assert login._failure is e.value and login._failed_until >= before + login.settings.refresh_retry_s
    assert login.lock_path.read_text() == "qwen-code's"  # never broken: its holder may be alive


@pytest.mark.parametrize("error,message", [
    (RefreshLockTimeout(), "work: another gateway's refresh did not finish in time"),
    (StateUnavailable("the shared database is not reachable"),
     "work: the refresh waits for the shared database (the shared database is not reachable)"),
])
async def test_the_shared_refresh_lock_failing_is_a_transient_failure(login, state, error, message):
    login.lock_path.parent.mkdir(parents=True)
    state.error = error
    with pytest.raises(AccountUnavailable) as e:
        async with login._locked():
            raise AssertionError("never entered")
    assert (str(e.value), e.value.transient) == (message, True)
    assert state.get("work")["last_error"] == message
    assert not login.lock_path.exists()  # the lock file released all the same


def test_a_success_clears_the_former_error(login, state):
    login._failed("work: timed out")
    assert state.get("work")["last_error"] == "work: timed out"
    login._refreshed()
    assert state.get("work")["last_error"] is None


def test_a_newer_login_left_in_a_temp_file_is_adopted_and_said(login, caplog):
    now = int(time.time() * 1000)
    write_creds(login.path, creds(now, "old"), LOGIN_ORDER)
    tmp = login.path.with_name(f"{login.path.name}.tmp.0f0e0d0c-0b0a-4908-8706-050403020100")
    tmp.write_text(json.dumps(creds(now + 3_600_000, "new")))
    os.chmod(tmp, 0o600)
    login._look_for_stranded()
    assert login._stranded
    with caplog.at_level(logging.WARNING, "qwen"):
        login._recover()
    assert not login._stranded and not tmp.exists()
    assert read_creds(login.path)["access_token"] == "new"
    assert stat.S_IMODE(login.path.stat().st_mode) == 0o600
    assert caplog.messages == [f"qwen: work: adopted the newer login left in {tmp.name} by a refresh that was cut "
                               "off before saving it"]


def test_a_temp_file_left_alone_is_said_once(login, caplog):
    write_creds(login.path, creds(int(time.time() * 1000)), LOGIN_ORDER)
    tmp = login.path.with_name(f"{login.path.name}.tmp.00000000-0000-4000-8000-000000000000")
    tmp.write_text("{half writ")
    os.chmod(tmp, 0o600)
    with caplog.at_level(logging.WARNING, "qwen"):
        login._recover()
        login._recover()
    assert caplog.messages == [f"qwen: work: left {tmp.name} as it is: not valid (half written, or not ours)"]
    assert tmp.exists()
