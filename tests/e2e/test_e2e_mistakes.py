"""Mistakes a newcomer makes in the first hour (issue 32, items 4 and 5), made for real: a real gateway, the
emulator, a real client; each test reads the message the user sees (the SDK's exception, the terminal, the
status table). Claude Code's side of the same mistakes: tests/e2e/test_e2e_claude_code.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import httpx
import openai
import pytest

from helpers import commands
from helpers.home import change_accounts
from helpers.procs import BIN

pytestmark = pytest.mark.e2e

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "ping"}]}


def sdk(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="anything", max_retries=0,
                         http_client=httpx.Client(trust_env=False, timeout=20))


# ---- item 4: wrong mode or URL ------------------------------------------------------------------------


def test_an_openai_base_url_client_at_the_explicit_proxy_reads_what_to_type(make_gateway, key_home):
    """OPENAI_BASE_URL at `mitmdump -s addons/qwen.py` (regular mode): was a bare 502 HTML page."""
    gw = make_gateway("explicit", mode="regular", env=key_home)
    with pytest.raises(openai.BadRequestError) as e:
        sdk(gw.url + "/v1").chat.completions.create(**CHAT)
    message = e.value.body["message"]
    print("\nthe user reads:", message)
    assert e.value.status_code == 400 and e.value.body["code"] == "explicit_proxy_mode"
    assert "runs as an explicit proxy" in message
    assert f"mitmdump -s addons/qwen.py --mode reverse:https://portal.qwen.ai -p {gw.port}" in message
    assert f"HTTPS_PROXY=http://127.0.0.1:{gw.port}" in message
    with httpx.Client(trust_env=False, timeout=10) as c:  # its own health check is still answered
        assert c.get(gw.url + "/health").json()["status"] == "ok"


def test_a_doubled_v1_simply_works(make_gateway, emu, key_home):
    gw = make_gateway("reverse", env=key_home)
    answer = sdk(gw.url + "/v1/v1").chat.completions.create(**CHAT)
    assert answer.choices[0].message.content == "Echo: ping"


def test_https_on_the_plain_listener_is_named_in_the_terminal(make_gateway, key_home):
    """https:// on the reverse-mode port: the client's error is about an untrusted certificate; the gateway's
    terminal says what to use instead."""
    gw = make_gateway("https", env=key_home)
    with pytest.raises(openai.APIConnectionError):
        sdk(f"https://127.0.0.1:{gw.port}/v1").chat.completions.create(**CHAT)
    want = (f"qwen: a client called https://127.0.0.1:{gw.port}, but the gateway's listener speaks plain HTTP "
            f"(no certificate needed on loopback): use http://127.0.0.1:{gw.port}/v1 as the base URL")
    deadline = time.monotonic() + 10
    while want not in gw.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert want in gw.log(), gw.log()


# ---- item 5: a key Qwen refuses -------------------------------------------------------------------------


def status_table(env: dict[str, str]) -> str:
    r = commands.run([BIN / "qwen-auth", "status"], env={**os.environ, **env}, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_a_key_qwen_refuses_names_the_account_and_its_variable(make_gateway, emu, key_home):
    """A key account whose key Qwen answers with `401 invalid access token or token expired`: the message
    said nothing of the account or its variable and read like the end of the OAuth tier; `qwen-auth status`
    and /health said `ok` afterwards."""
    env = {**key_home, "EMU_KEY": "sk-a-key-qwen-does-not-know"}
    gw = make_gateway("refused", env=env)
    with pytest.raises(openai.AuthenticationError) as e:
        sdk(gw.url + "/v1").chat.completions.create(**CHAT)
    message = e.value.body["message"]
    print("\nthe user reads:", message)
    assert "Qwen refused the key of account emu ($EMU_KEY)" in message
    assert "invalid access token or token expired" in message  # Qwen's own words, quoted
    assert "sk-a-key" not in message
    row = re.search(r"^emu\s+key\s+dashscope\s+(\S+)", status_table(env), re.M)  # ACCOUNT KIND PROVIDER STATE
    assert row and row.group(1) == "refused", status_table(env)
    with httpx.Client(trust_env=False, timeout=10) as c:
        health = c.get(gw.url + "/health").json()
    assert health["status"] == "degraded" and health["accounts"][0]["state"] == "refused", health
    gw.stop()
    again = make_gateway("refused-again", env=env)  # kept across a restart, as cooldowns are
    with httpx.Client(trust_env=False, timeout=10) as c:
        assert c.get(again.url + "/health").json()["accounts"][0]["state"] == "refused"
    again.stop()
    fixed = make_gateway("fixed", env=key_home)  # the right key in the variable: usable again
    assert sdk(fixed.url + "/v1").chat.completions.create(**CHAT).choices[0].message.content == "Echo: ping"
    assert re.search(r"^emu\s+key\s+dashscope\s+ok\b", status_table(key_home), re.M), status_table(key_home)
    assert "sk-a-key-qwen-does-not-know" not in json.dumps(health) + status_table(env)


def test_a_refused_key_rotates_to_the_next_account(make_gateway, emu, key_home, tmp_path):
    change_accounts(tmp_path / "state", lambda accounts: [{**accounts[0], "name": "wrong", "key_env": "WRONG_KEY"},
                                                          *accounts])
    gw = make_gateway("rotate", env={**key_home, "WRONG_KEY": "sk-a-key-qwen-does-not-know"})
    answer = sdk(gw.url + "/v1").chat.completions.create(**CHAT)
    assert answer.choices[0].message.content == "Echo: ping"
    with httpx.Client(trust_env=False, timeout=10) as c:
        states = {a["name"]: a["state"] for a in c.get(gw.url + "/health").json()["accounts"]}
    assert states == {"wrong": "refused", "emu": "ok"}


# ---- issue 51, item 5: a client at the explicit proxy that does not trust mitmproxy's CA ------------------


def test_codex_without_the_ca_at_the_explicit_proxy_is_told_the_setting_once(make_gateway, emu, key_home, tmp_path):
    """Codex behind HTTPS_PROXY without the mitmproxy CA retries "waiting for network" for ever; the terminal
    showed only mitmproxy's TLS line, again and again. Now one line says which setting gives Codex the CA."""
    from e2e.test_e2e_codex import Codex
    gw = make_gateway("untrusted", mode="regular", env=key_home)
    codex = Codex(tmp_path, "untrusted", "[analytics]\nenabled = false\n", OPENAI_API_KEY="anything",
                  HTTPS_PROXY=gw.url)
    r = subprocess.run(["timeout", "-k", "5", "25", codex.binary, "exec", "--skip-git-repo-check", "say hello"],
                       cwd=codex.work, env=codex.env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0  # it cannot work without the CA
    log = gw.log()
    handshakes = log.count("Client TLS handshake failed")
    told = [ln for ln in log.splitlines() if "does not trust the gateway's certificate for api.openai.com" in ln]
    print(f"\n{handshakes} failed handshakes; the gateway said:\n" + "\n".join(told))
    assert handshakes >= 2  # Codex tried again and again
    ca = str(gw.ca_cert)
    assert len(told) == 1, told  # once, however often it retries
    assert "api.openai.com" in told[0] and f"CODEX_CA_CERTIFICATE={ca}" in told[0], told
    assert "SSL_CERT_FILE" in told[0] and "docs/clients.md" in told[0]


def test_https_proxy_at_the_reverse_listener_is_told_what_to_use_once(make_gateway, key_home):
    """HTTPS_PROXY=http://127.0.0.1:PORT with a reverse-mode gateway: the client sends `CONNECT api.openai.com:443`.
    mitmproxy answers 400 (a CONNECT in reverse mode), which openai-python shows as `Connection error.`; the
    request line said `passed 502`. Now it says what happened (refused 400), and one line says what to use."""
    gw = make_gateway("reverse-proxied", env=key_home)
    client = openai.OpenAI(api_key="anything", max_retries=2,  # no base URL: api.openai.com, through the proxy
                           http_client=httpx.Client(proxy=gw.url, trust_env=False, timeout=20))
    with pytest.raises(openai.APIConnectionError) as e:
        client.chat.completions.create(**CHAT)
    assert "400" in str(e.value.__cause__), repr(e.value.__cause__)  # the protocol's answer to a CONNECT: a status
    time.sleep(0.5)  # the request lines are written once the answers went out
    log = gw.log()
    told = [ln for ln in log.splitlines() if "as its HTTPS_PROXY" in ln]
    print("\nthe gateway said:\n" + "\n".join(told))
    assert len(told) == 1, log  # once, for three CONNECTs (the SDK's two retries)
    assert f"http://127.0.0.1:{gw.port}/v1" in told[0] and "mitmdump -s addons/qwen.py" in told[0], told
    connects = [ln for ln in log.splitlines() if "CONNECT" in ln and "api.openai.com:443" in ln and "total=" in ln]
    assert len(connects) == 3 and all(" refused 400 " in ln for ln in connects), connects
