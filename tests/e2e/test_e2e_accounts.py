"""Accounts through a real gateway: 401 refresh and retry, quota rotation, exhaustion, key accounts."""

from __future__ import annotations

import json
import os

import httpx
import pytest

from helpers import commands
from helpers.home import CODING_PLAN, Home
from helpers.procs import BIN, write_creds

pytestmark = pytest.mark.e2e


def login(emu, qdir, expires_in=3600):
    issued = emu.admin("POST", "tokens", {"expires_in": expires_in})
    write_creds(qdir, access_token=issued["access_token"], refresh_token=issued["refresh_token"],
                resource_url=emu.url, expires_in=expires_in)
    return issued["access_token"]


def ask(gw, text="hi", **kw):
    import openai
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=30)
    return c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": text}], **kw)


def test_401_refreshes_once_and_the_retry_succeeds(make_gateway, emu, home):
    tmp, env = home
    old = login(emu, tmp / ".qwen")
    gw = make_gateway("g401", env=env)
    emu.fault("auth401", token=old)
    r = ask(gw, "after refresh")
    assert r.choices[0].message.content == "Echo: after refresh"
    assert emu.stats()["refresh_calls"] == 1
    chats = emu.chat_requests()
    assert [c["headers"]["authorization"] != f"Bearer {old}" for c in chats] == [False, True]
    # the refreshed login was written back for qwen-code to use too
    assert json.loads((tmp / ".qwen" / "oauth_creds.json").read_text())["access_token"] != old
    # and streaming still works afterwards, event by event
    assert "".join(ch.choices[0].delta.content or "" for ch in ask(gw, "s", stream=True) if ch.choices) == "Echo: s"


def test_dead_login_is_an_authentication_error_naming_the_fix(make_gateway, emu, home):
    import openai
    tmp, env = home
    write_creds(tmp / ".qwen", access_token="expired", refresh_token="dead", resource_url=emu.url, expires_in=-5)
    gw = make_gateway("dead", env=env)
    with pytest.raises(openai.AuthenticationError) as e:
        ask(gw)
    assert "qwen-auth login" in e.value.message
    health = httpx.get(gw.url + "/health", trust_env=False).json()
    assert health["accounts"][0]["state"] == "needs_login" and health["status"] == "degraded"
    assert (tmp / ".qwen" / "oauth_creds.json").exists()


def test_quota_rotates_to_the_next_account_without_a_client_error(make_gateway, emu, home):
    tmp, env = home
    token_a = login(emu, tmp / ".qwen")
    gateway_home = Home(tmp, emu)
    key_b = gateway_home.key("b", path=CODING_PLAN, key_env="KEY_B", default_model="qwen3-coder-plus")
    gw = make_gateway("quota", env=gateway_home.env(**env))
    emu.fault("quota429", token=token_a)
    r = ask(gw, "rotate")
    assert r.choices[0].message.content == "Echo: rotate"
    auths = [c["headers"]["authorization"] for c in emu.chat_requests()]
    assert auths == [f"Bearer {token_a}", f"Bearer {key_b}"]
    last = emu.chat_requests()[-1]
    assert last["headers"]["user-agent"].startswith("OpenAI/Python ") and last["body"]["model"] == "qwen3-coder-plus"
    # A is cooling down: the next request goes straight to B, streamed
    emu.admin("DELETE", "requests")
    assert "".join(c.choices[0].delta.content or "" for c in ask(gw, "next", stream=True) if c.choices) == "Echo: next"
    assert [c["headers"]["authorization"] for c in emu.chat_requests()] == [f"Bearer {key_b}"]
    states = {a["name"]: a["state"] for a in httpx.get(gw.url + "/health", trust_env=False).json()["accounts"]}
    assert states == {"default": "cooling_down", "b": "ok"}


def test_every_account_exhausted_gives_openai_quota_429_that_clients_do_not_retry(make_gateway, emu, home):
    """No Retry-After (the quota is back in hours: a client would sleep that long) and `x-should-retry: false`:
    openai-python gives up at once instead of retrying twice."""
    import openai
    tmp, env = home
    token_a = login(emu, tmp / ".qwen")
    gateway_home = Home(tmp, emu)
    key_b = gateway_home.key("b", path=CODING_PLAN, key_env="KEY_B")
    gw = make_gateway("exhausted", env=gateway_home.env(**env))
    emu.fault("quota429", token=token_a)
    emu.fault("quota403", token=key_b)
    with pytest.raises(openai.RateLimitError) as e:
        ask(gw)
    assert e.value.code == "insufficient_quota"
    assert "retry-after" not in e.value.response.headers
    assert e.value.response.headers["x-should-retry"] == "false"
    with pytest.raises(openai.RateLimitError):  # and stays so, without calling Qwen
        ask(gw)
    assert len(emu.chat_requests()) == 2


def test_a_spent_quota_is_said_in_qwens_words_with_the_account_named(make_gateway, emu, home):
    """The client reads that the quota is spent, on which account, in Qwen's own words, on the request Qwen
    refused and on the next one (the account cooling down: Qwen is not asked again)."""
    import openai
    tmp, env = home
    gateway_home = Home(tmp, emu)
    key = gateway_home.key("plan", path=CODING_PLAN, key_env="KEY_PLAN")
    gw = make_gateway("spent", env=gateway_home.env(**env))
    emu.fault("quota429", token=key)
    for _ in range(2):
        with pytest.raises(openai.RateLimitError) as e:
            ask(gw)
        message = e.value.body["message"]
        assert e.value.code == "insufficient_quota" and e.value.response.headers["x-should-retry"] == "false"
        assert "quota" in message.lower() and "plan" in message and "Free allocated quota exceeded." in message, message
        assert "already tried" not in message, message
    assert len(emu.chat_requests()) == 1


def test_throttling_waits_and_retries(make_gateway, emu, home):
    tmp, env = home
    login(emu, tmp / ".qwen")
    gw = make_gateway("throttle", env=env)
    emu.fault("throttle429", retry_after=1)
    assert ask(gw, "patience").choices[0].message.content == "Echo: patience"
    assert len(emu.chat_requests()) == 2


def test_counts_persist_across_restarts(make_gateway, emu, home):
    tmp, env = home
    login(emu, tmp / ".qwen")
    gw = make_gateway("count1", env=env)
    ask(gw)
    ask(gw)
    gw.stop()
    out = commands.run([BIN / "qwen-auth", "status", "--json"], env={**os.environ, **env},
                         timeout=20)
    assert json.loads(out.stdout)[0]["requests_today"] == 2
