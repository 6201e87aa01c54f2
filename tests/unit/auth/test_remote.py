"""Remote login over HTTP (auth/remote.py): a device flow started and finished by a client, against a scripted
OAuth server on loopback (tests/helpers/oauth_stub.py) and a fake clock: the device code stays in the process,
polls are paced, the login is saved as `qwen-auth login` saves it (0600)."""

from __future__ import annotations

import json
import stat

import pytest

from qwen_gateway.auth import remote
from qwen_gateway.auth.registry import Registry
from qwen_gateway.auth.remote import RemoteLogin, RemoteLoginError
from qwen_gateway.settings.auth import AuthSettings
from helpers.oauth_stub import OAuthStub

DEVICE = {"device_code": "dev-secret", "user_code": "BF0Q6UX9", "verification_uri": "https://chat.qwen.ai/authorize",
          "verification_uri_complete": "https://chat.qwen.ai/authorize?user_code=BF0Q6UX9", "expires_in": 600}
PENDING = (400, {"error": "authorization_pending"})
TOKEN = {"access_token": "at-1", "refresh_token": "rt-1", "token_type": "Bearer", "expires_in": 3600,
         "resource_url": "portal.qwen.ai"}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stub():
    s = OAuthStub()
    yield s
    s.close()


@pytest.fixture
def settings(tmp_path, stub) -> AuthSettings:
    return AuthSettings.from_env(qwen_dir=tmp_path / ".qwen", state_dir=tmp_path / "state",
                                 oauth_base_url=stub.url, default_api_base="http://127.0.0.1:9/v1")


async def test_a_login_from_initiate_to_success_is_saved_like_qwen_auth_login(stub, settings):
    clock, reloaded = Clock(), []
    login = RemoteLogin(settings, on_success=reloaded.append, clock=clock)
    stub.queue(200, DEVICE)
    started = await login.initiate("work")
    assert "dev-secret" not in json.dumps(started)  # the real device code stays in this process
    assert {k: started[k] for k in ("user_code", "verification_uri_complete", "expires_in", "interval", "account")} \
        == {"user_code": "BF0Q6UX9", "verification_uri_complete": DEVICE["verification_uri_complete"],
            "expires_in": 600, "interval": 2, "account": "work"}
    stub.queue(*PENDING)
    assert await login.poll(started["device_code_id"]) == {"status": "pending", "interval": 2.0, "account": "work"}
    assert login.sessions() == 1
    stub.queue(200, TOKEN)
    clock.now += 2
    done = await login.poll(started["device_code_id"])
    assert done["status"] == "success" and done["account"] == "work" and done["expires_at"].endswith("Z")
    assert reloaded == ["work"] and login.sessions() == 0
    path = settings.creds_path("work")
    assert json.loads(path.read_text())["access_token"] == "at-1" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert await login.poll(started["device_code_id"]) == done  # idempotent once finished
    assert stub.requests[1]["form"]["device_code"] == "dev-secret"


async def test_polls_faster_than_the_interval_are_answered_locally(stub, settings):
    clock = Clock()
    login = RemoteLogin(settings, clock=clock)
    stub.queue(200, DEVICE)
    sid = (await login.initiate())["device_code_id"]
    stub.queue(400, {"error": "slow_down"})
    assert (await login.poll(sid))["interval"] == 3.0  # slow_down: x1.5
    for _ in range(5):
        assert (await login.poll(sid))["status"] == "pending"
    assert len(stub.requests) == 2  # the device code and one poll: the others never left the process


async def test_an_expired_or_denied_login_ends_with_an_error(stub, settings):
    clock = Clock()
    login = RemoteLogin(settings, clock=clock)
    stub.queue(200, DEVICE)
    sid = (await login.initiate())["device_code_id"]
    clock.now += 601
    assert await login.poll(sid) == {"status": "error", "error": "unknown_id", "message": (
        "No such login in progress (unknown or expired id); start again with /auth/initiate.")}
    stub.queue(200, DEVICE)
    sid = (await login.initiate())["device_code_id"]
    stub.queue(400, {"error": "access_denied", "error_description": "the user said no"})
    denied = await login.poll(sid)
    assert (denied["status"], denied["error"], denied["account"]) == ("error", "access_denied", "default")
    assert "the user said no" in denied["message"]
    clock.now += remote.KEEP_FINISHED_S + 1
    assert (await login.poll(sid))["error"] == "unknown_id"  # a finished login is forgotten after a while


async def test_initiate_refuses_bad_names_other_kinds_and_too_many_logins(stub, settings, monkeypatch):
    login = RemoteLogin(settings, clock=Clock())
    with pytest.raises(RemoteLoginError) as e:
        await login.initiate("../evil")
    assert (e.value.status, e.value.code) == (400, "invalid_account")
    Registry(settings).put({"name": "k", "kind": "key", "base_url": "http://x/v1", "key": "sk-1"})
    with pytest.raises(RemoteLoginError) as e:
        await login.initiate("k")
    assert (e.value.status, e.value.code) == (409, "account_exists")
    monkeypatch.setattr(remote, "MAX_SESSIONS", 1)
    stub.queue(200, DEVICE)
    await login.initiate()
    with pytest.raises(RemoteLoginError) as e:
        await login.initiate()
    assert (e.value.status, e.value.code) == (429, "too_many_logins")


async def test_an_unreachable_oauth_server_is_a_502(tmp_path):
    settings = AuthSettings.from_env(qwen_dir=tmp_path / ".qwen", state_dir=tmp_path / "state",
                                     oauth_base_url="http://127.0.0.1:9", default_api_base="http://127.0.0.1:9/v1")
    with pytest.raises(RemoteLoginError) as e:
        await RemoteLogin(settings).initiate()
    assert (e.value.status, e.value.code) == (502, "oauth_unavailable")
