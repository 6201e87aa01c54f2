"""Remote login through the gateway: POST /auth/initiate + /auth/poll, off by default."""

from __future__ import annotations

import time

import httpx
import pytest

pytestmark = pytest.mark.e2e


def test_remote_login_is_off_by_default(gw):
    r = httpx.post(gw.url + "/auth/initiate", json={}, trust_env=False)
    assert r.status_code == 404 and r.json()["error"]["code"] == "remote_login_disabled"


def test_remote_login_end_to_end(make_gateway, emu, tmp_path):
    import openai
    env = {"QWEN_DIR": str(tmp_path / ".qwen"), "QWEN_GATEWAY_HOME": str(tmp_path / "state"),
           "QWEN_OAUTH_BASE_URL": emu.url, "HOME": str(tmp_path)}
    gw = make_gateway("remote", env=env, args=("--set", "qwen_remote_login=loopback"))
    with pytest.raises(openai.APIStatusError):  # no account yet
        openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    start = httpx.post(gw.url + "/auth/initiate", json={}, trust_env=False).json()
    assert start["user_code"] and "device_code" not in start and "verifier" not in str(start)
    emu.admin("POST", "approve", {"user_code": start["user_code"]})
    deadline = time.monotonic() + 30
    while True:
        poll = httpx.post(gw.url + "/auth/poll", json={"id": start["device_code_id"]}, trust_env=False).json()
        if poll["status"] != "pending" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert poll["status"] == "success", poll
    assert (tmp_path / ".qwen" / "oauth_creds.json").exists()
    r = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "logged in remotely"}])
    assert r.choices[0].message.content == "Echo: logged in remotely"
