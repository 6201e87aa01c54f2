"""Access control: client keys, loopback by default, request size limit (key comparison and loopback itself:
tests/unit/test_peers.py)."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from helpers.procs import ADDON, BIN


@pytest.mark.e2e
def test_refuses_to_listen_beyond_loopback_without_keys(tmp_path, oauth_home):
    r = subprocess.run([str(BIN / "mitmdump"), "--set", f"confdir={tmp_path}", "--mode",
                        "reverse:https://portal.qwen.ai@0.0.0.0:0", "-s", str(ADDON)],
                       capture_output=True, text=True, timeout=30, env={**oauth_home["env"], "PATH": ""})
    assert r.returncode != 0
    assert "beyond loopback without client keys" in r.stdout + r.stderr


@pytest.mark.e2e
def test_keys_required_on_an_open_listener(make_gateway, emu, oauth_home):
    import openai
    gw = make_gateway("open", listen="0.0.0.0", env={**oauth_home["env"], "QWEN_GATEWAY_KEYS": "gw-key-1,gw-key-2"})
    no_key = openai.OpenAI(base_url=gw.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        no_key.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "invalid_api_key"
    assert emu.requests() == []  # nothing reached Qwen
    ok = openai.OpenAI(base_url=gw.url + "/v1", api_key="gw-key-2", max_retries=0)
    assert ok.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "k"}]
                                      ).choices[0].message.content == "Echo: k"
    r = httpx.post(gw.url + "/v1/chat/completions", headers={"x-api-key": "gw-key-1"}, trust_env=False,
                   json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x-api-key"}]})
    assert r.status_code == 200
    assert "gw-key" not in str(emu.requests())  # client keys never go upstream
    assert httpx.get(gw.url + "/health", trust_env=False).status_code == 200  # open, no secrets


@pytest.mark.e2e
def test_oversized_body_gets_413(make_gateway, emu, oauth_home):
    import openai
    gw = make_gateway("big", args=("--set", "qwen_max_body_mb=1"), env=oauth_home["env"])
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * (2 << 20)}]}
    r = httpx.post(gw.url + "/v1/chat/completions", json=body, trust_env=False, timeout=30)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert emu.requests() == []
    assert openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "small"}]).choices[0].message.content == "Echo: small"
