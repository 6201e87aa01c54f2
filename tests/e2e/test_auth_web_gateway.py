"""Web accounts through a real gateway (mitmdump + the emulator + openai-python): off by default; opted in,
one start-up WARNING saying the risk, and the session sent to the Qwen Chat web API only: DashScope never sees
it, /health shows it. Web accounts answering requests: tests/e2e/test_e2e_qwenweb.py."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from qwen_gateway.accounts import WEB
from qwen_gateway.auth import web_session as ws
from qwen_gateway.auth.registry import Registry
from qwen_gateway.settings.auth import AuthSettings
from unit.auth.test_web_session import HEADER, ITNA, REFRESH, SECRETS, TOKEN, UA
from e2e.test_e2e_accounts import login

from qwen_gateway.auth import web_cookies as wc

pytestmark = pytest.mark.e2e


def import_web(tmp_path, name: str = "chat") -> None:
    settings = AuthSettings.from_env(qwen_dir=tmp_path / ".qwen", state_dir=tmp_path / "state")
    session = ws.new_session(TOKEN, wc.keep(wc.parse_header(HEADER)), user_agent=UA, bx={"bx-v": "2.5.36"})
    ws.save(settings.web_session_path(name), session)
    Registry(settings).put({"name": name, "kind": WEB})


def ask(gw):
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=30)
    return c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])


def health(gw) -> dict:
    return httpx.get(gw.url + "/health", trust_env=False).json()


def leaked(*texts: str) -> list[str]:
    return [s for s in SECRETS if any(s in t for t in texts)]


def test_off_by_default_a_web_account_is_shown_but_never_used(make_gateway, emu, home):
    tmp, env = home
    import_web(tmp)
    gw = make_gateway("off", env=env)
    with pytest.raises(openai.InternalServerError) as e:
        ask(gw)
    assert e.value.status_code == 503 and "chat: disabled: --set qwen_web_accounts=true" in e.value.message
    h = health(gw)
    assert h["status"] == "degraded" and h["accounts"][0]["state"] == "disabled"
    assert emu.chat_requests() == []
    assert "qwen_web_accounts is on" not in gw.log()
    assert leaked(gw.log(), json.dumps(h), e.value.message) == []


def test_opted_in_it_warns_once_and_sends_the_web_session_to_the_web_api_only(make_gateway, emu, home):
    tmp, env = home
    import_web(tmp)  # a session the emulator never minted: its web API refuses it, and the refresh too
    gw = make_gateway("on", env={**env, "QWEN_ACCOUNTS_CHECK_S": "0", "QWEN_WEB_BASE_URL": emu.url,
                                 "QWEN_WEB_AUTH_BASE_URL": emu.url}, args=("--set", "qwen_web_accounts=true"))
    row = health(gw)["accounts"][0]
    assert (row["kind"], row["state"], row["session"], row["refresh"]) == ("web", "ok", "ok", "possible")
    with pytest.raises(openai.AuthenticationError) as e:
        ask(gw)
    assert "qwen-auth add-web" in e.value.message
    requests = emu.requests()
    # the live catalogue (GET /api/models) is fetched in the background, whenever: it carries no credential
    catalogue = [r for r in requests if r["path"] == "/api/models"]
    assert all("cookie" not in r["headers"] and "authorization" not in r["headers"] for r in catalogue)
    assert [r["path"] for r in requests if r not in catalogue] == ["/api/v2/chats/new", "/api/v2/auths/refresh"]
    warnings = [ln for ln in gw.log().splitlines() if "qwen_web_accounts is on" in ln]
    assert len(warnings) == 1 and "banned account" in warnings[0]
    assert health(gw)["accounts"][0]["state"] == "needs_login"
    # With an account the DashScope upstream serves, that one answers; the web session never goes there.
    token = login(emu, tmp / ".qwen")
    assert ask(gw).choices[0].message.content == "Echo: hi"
    sent = emu.chat_requests()
    assert [r["headers"]["authorization"] for r in sent] == [f"Bearer {token}"]
    assert leaked(json.dumps(emu.requests()), gw.log(), json.dumps(health(gw)), e.value.message) == []
    assert REFRESH not in json.dumps(emu.requests()) and ITNA not in gw.log()
