"""Upstream and credential faults: the client gets a prompt OpenAI-format error or a clean end of stream,
the gateway keeps serving, and no credential data is lost."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from helpers.procs import free_port, write_creds

if TYPE_CHECKING:
    import openai  # annotations only; the functions import it when they run

pytestmark = pytest.mark.e2e


def client(gw, timeout=20) -> openai.OpenAI:
    import openai
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="client", max_retries=0, timeout=timeout)


def ask(gw, text="hi", **kw):
    return client(gw).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": text}], **kw)


def still_serving(gw) -> None:
    assert ask(gw, "after").choices[0].message.content == "Echo: after"


def login(emu, tmp, expires_in=3600):
    issued = emu.admin("POST", "tokens", {"expires_in": max(expires_in, 1)})
    return issued, write_creds(tmp / ".qwen", access_token=issued["access_token"],
                               refresh_token=issued["refresh_token"], resource_url=emu.url, expires_in=expires_in)


def test_connection_refused_is_a_prompt_502(make_gateway, emu, home):
    import openai
    tmp, env = home
    closed = free_port()  # nobody listens there, and no connection is given it meanwhile
    write_creds(tmp / ".qwen", access_token="t", resource_url=f"http://127.0.0.1:{closed}")
    gw = make_gateway("refused", env=env)
    t0 = time.monotonic()
    with pytest.raises(openai.InternalServerError) as e:
        ask(gw)
    assert e.value.status_code == 502 and time.monotonic() - t0 < 10
    assert gw.alive()


def test_a_reused_connection_reset_before_headers_is_retried_once(gw, emu):
    # a pooled connection that died while idle is indistinguishable from one reset before headers: one retry
    assert ask(gw, "warm").choices[0].message.content == "Echo: warm"  # the engine now holds a pooled connection
    emu.fault("reset_before_headers")
    assert ask(gw, "again").choices[0].message.content == "Echo: again"
    assert len(emu.chat_requests()) == 3


def test_reset_before_headers_twice_is_a_502(gw, emu):
    import openai
    assert ask(gw, "warm").choices[0].message.content == "Echo: warm"
    emu.fault("reset_before_headers", count=2)
    with pytest.raises(openai.InternalServerError) as e:
        ask(gw)
    assert e.value.status_code == 502
    still_serving(gw)


@pytest.mark.parametrize("fault,status,code", [
    ("server500", 500, "InternalError"),
    ("server500_empty", 500, "upstream_error"),
    ("server503", 503, "ServiceUnavailable"),
    ("invalid_json", 502, "invalid_upstream_response"),
])
def test_bad_upstream_answers_are_openai_errors(gw, emu, fault, status, code):
    emu.fault(fault)
    r = httpx.post(gw.url + "/v1/chat/completions", trust_env=False, timeout=20,
                   json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == status and r.json()["error"]["code"] == code
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    still_serving(gw)


def test_invalid_sse_line_is_skipped(gw, emu):
    emu.fault("invalid_sse")
    text = "".join(c.choices[0].delta.content or "" for c in ask(gw, "one two", stream=True) if c.choices)
    assert text == "Echo: one two"


def test_stalled_stream_is_closed_by_the_idle_watchdog(make_gateway, emu, oauth_home):
    """Qwen goes silent after the answer's opening: after the idle limit the stream is a break (issue 67), so the
    request is sent again (nothing of the answer had gone out) and the client reads the whole answer; a stream
    that stays silent every time ends in the idle error after the continuations allowed."""
    import openai
    gw = make_gateway("stall", env=oauth_home["env"], args=("--set", "qwen_stream_idle_timeout=2"))
    emu.switches(stall_seconds=30)
    emu.fault("stall", count=1)
    t0 = time.monotonic()
    text = "".join(c.choices[0].delta.content or "" for c in ask(gw, "stall please", stream=True) if c.choices)
    assert text == "Echo: stall please" and 2 <= time.monotonic() - t0 < 15
    emu.fault("stall", count=3)
    t0 = time.monotonic()
    with pytest.raises((openai.APIError, httpx.HTTPError)) as e:
        for _ in ask(gw, "stall please", stream=True):
            pass
    assert "qwen_stream_idle_timeout" in str(e.value)
    assert time.monotonic() - t0 < 15  # the client's own timeout (20 s) was not what ended it
    still_serving(gw)


def test_slow_oauth_endpoint_during_refresh(make_gateway, emu, home):
    tmp, env = home
    login(emu, tmp, expires_in=5)
    gw = make_gateway("slowoauth", env=env)
    emu.fault("oauth_slow", seconds=2)
    assert ask(gw, "patient").choices[0].message.content == "Echo: patient"
    assert emu.stats()["refresh_calls"] == 1


def test_oauth_down_during_refresh_keeps_the_login(make_gateway, emu, home):
    import openai
    tmp, env = home
    issued, path = login(emu, tmp, expires_in=5)
    before = path.read_bytes()
    gw = make_gateway("oauthdown", env={**env, "QWEN_REFRESH_RETRY_S": "0.5"})
    emu.fault("oauth500")
    with pytest.raises(openai.APIStatusError) as e:
        ask(gw)
    assert e.value.status_code == 503 and "Token refresh failed" in e.value.message
    assert path.read_bytes() == before  # nothing lost
    time.sleep(0.6)  # the account waits QWEN_REFRESH_RETRY_S after a failed refresh (no hammering)
    assert ask(gw, "recovered").choices[0].message.content == "Echo: recovered"  # refreshes now
    assert json.loads(path.read_text())["access_token"] != issued["access_token"]


def test_credential_file_deleted_corrupted_unreadable_while_running(make_gateway, emu, home):
    import openai
    tmp, env = home
    _, path = login(emu, tmp)
    good = path.read_bytes()
    gw = make_gateway("files", env={**env, "QWEN_FILE_CHECK_S": "0.3", "QWEN_ACCOUNTS_CHECK_S": "0.3"})
    still_serving(gw)
    time.sleep(0.4)  # past the file check interval
    path.unlink()
    with pytest.raises(openai.APIStatusError) as e:
        ask(gw)
    assert e.value.status_code in (401, 503) and "qwen-auth login" in e.value.message
    path.write_text("{corrupt")
    time.sleep(0.4)  # the pool re-reads its account list at most every QWEN_ACCOUNTS_CHECK_S
    with pytest.raises(openai.APIStatusError) as e:
        ask(gw)
    assert "oauth_creds.json" in e.value.message and "qwen-auth login" in e.value.message
    path.unlink()
    path.mkdir()  # unreadable as a file (root can read any file mode, so use a directory)
    with pytest.raises(openai.APIStatusError):
        ask(gw)
    path.rmdir()
    path.write_bytes(good)
    time.sleep(0.4)
    still_serving(gw)
    assert gw.alive()
