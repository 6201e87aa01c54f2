"""Qwen Chat web sessions without a process (auth/web_session.py; issue #24 item 1): the session file (0600,
atomic), the refresh through auth.qwen.ai against a scripted server on loopback (served from a thread of this
process), and no secret in anything shown. The cookie formats: test_web_cookies.py; the account behind the pool
and the opt-in: test_web_account.py; the shared sessions and stub: tests/helpers/qwen_web_auth.py."""

from __future__ import annotations

import json
import os
import stat

import pytest

from qwen_gateway.accounts import KEY, WEB, Credential
from qwen_gateway.auth import web_cookies as wc
from qwen_gateway.auth import web_session as ws
from helpers.qwen_web_auth import ITNA, NEW, NOW, REFRESH, SECRETS, TOKEN, UA, run, sample_session
from helpers.qwen_web_auth import stub  # noqa: F401  (a fixture)
from helpers.qwen_web_auth import HEADER  # noqa: F401  (tests/e2e/test_auth_web_gateway.py imports the cookies from here)


# ---- the session file --------------------------------------------------------------------------------


def test_session_file_is_0600_in_a_0700_folder_and_round_trips(tmp_path):
    path = tmp_path / "state" / "web" / "chat.json"
    s = sample_session()
    ws.save(path, s)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert ws.load(path) == s and s.expires_at == wc.jwt_exp(TOKEN) and s.can_refresh
    assert ws.load(tmp_path / "absent.json") is None


def test_session_write_is_atomic_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "web" / "chat.json"
    ws.save(path, sample_session())
    before = path.read_bytes()

    def crash(*a):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        ws.save(path, sample_session(token="new-token-that-never-landed"))
    assert path.read_bytes() == before and os.listdir(path.parent) == ["chat.json"]  # no temp file left


def test_a_broken_session_file_is_named_not_quoted(tmp_path):
    path = tmp_path / "chat.json"
    path.write_text(json.dumps({"token": "", "cookies": [{"name": "x", "value": ITNA}]}))
    with pytest.raises(ValueError) as e:
        ws.load(path)
    assert "chat.json is not a valid web session" in str(e.value) and ITNA not in str(e.value)


def test_the_credential_never_shows_its_secrets():
    cred = Credential("chat", WEB, "https://chat.qwen.ai", TOKEN, cookies={"token": TOKEN, "ssxmod_itna": ITNA},
                      headers={"bx-ua": "231!bxua-value", "user-agent": UA})
    shown = repr(cred) + str(cred)
    assert "chat" in shown and all(s not in shown for s in (TOKEN, ITNA, "231!bxua-value"))
    assert repr(sample_session()).count(TOKEN) == 0 and ITNA not in repr(sample_session())
    assert Credential("k", KEY, "http://x", "t").cookies == {}  # the other kinds: unchanged


# ---- refresh through auth.qwen.ai (a scripted server on loopback) ---------------------------------------


def test_refresh_sends_the_jar_and_the_auth_domain_headers_without_authorization(stub):
    stub.queue(200, {"success": True, "data": {"access_token": NEW, "refresh_token": "rt-rotated-2"}})
    new = run(ws.refresh(sample_session(), stub.url))
    req = stub.requests[0]
    assert req["method"] == "GET" and req["path"] == "/api/v2/auths/refresh"
    h = req["headers"]
    assert "authorization" not in h  # the access token is what expired
    jar = dict(p.split("=", 1) for p in h["cookie"].split("; "))
    assert jar["refresh_token"] == REFRESH and jar["token"] == TOKEN and "ssxmod_itna" not in jar  # chat's own
    assert h["user-agent"] == UA and h["source"] == "h5" and h["version"] == "0.3.12"
    assert h["origin"] == h["x-request-origin"] == "https://chat.qwen.ai" and h["referer"] == "https://chat.qwen.ai/"
    assert h["sec-fetch-site"] == "same-site" and h["accept"] == "application/json" and len(h["x-request-id"]) == 36
    # the newest token, the rotated refresh cookie, and the SPA's token cookie kept in step with the token
    assert new.token == NEW and new.refresh_token == "rt-rotated-2" and wc.find(new.cookies, "token") == NEW
    assert new.expires_at == wc.jwt_exp(NEW) and new.refreshed_at is not None
    assert wc.find(new.cookies, "ssxmod_itna") == ITNA  # the rest of the jar is untouched


# Named ids: the default ones would hold the expiry, which is the clock's, and xdist's workers must collect the same.
@pytest.mark.parametrize("reply, headers, token, refresh, expires", [
    ({"data": {"token": NEW}}, [], NEW, REFRESH, wc.jwt_exp(NEW)),  # no rotation: the old cookie stays
    ({"data": {"access_token": "opaque-new", "expires_at": 1790000000123}}, [], "opaque-new", REFRESH, 1790000000.123),
    ({"data": {"access_token": "opaque-new", "expires_at": 1790000000}}, [], "opaque-new", REFRESH, 1790000000.0),
    ({"access_token": NEW}, [("Set-Cookie", "refresh_token=rt-by-cookie; Domain=.qwen.ai; Path=/; HttpOnly; "
                                            "Max-Age=2592000")], NEW, "rt-by-cookie", wc.jwt_exp(NEW)),
    ({"success": True, "data": {"access_token": NEW, "refresh_token": "rt-body"}},
     [("Set-Cookie", "refresh_token=rt-cookie; Domain=.qwen.ai; Path=/")], NEW, "rt-cookie", wc.jwt_exp(NEW)),
], ids=["token", "expires-ms", "expires-s", "cookie-rotates", "cookie-over-body"])
def test_every_documented_refresh_answer_shape(stub, reply, headers, token, refresh, expires):
    stub.queue(200, reply, headers)
    new = run(ws.refresh(sample_session(), stub.url))
    assert (new.token, new.refresh_token) == (token, refresh)
    assert new.expires_at == pytest.approx(expires)
    assert [c["name"] for c in new.cookies].count("refresh_token") == 1


@pytest.mark.parametrize("status, body, error, says", [
    (401, {"detail": "Unauthorized"}, ws.NeedsLogin, "HTTP 401"),
    (200, {"success": False, "data": {"code": "Unauthorized", "details": "401 token expired"}}, ws.NeedsLogin,
     "Unauthorized"),
    (200, '<html><script>window.location.replace("https://chat.qwen.ai/_____tmd_____/punish?x5secdata=abc")'
          '</script></html>', ws.Punished, "anti-bot page"),
    (200, {"ret": ["FAIL_SYS_USER_VALIDATE::sorry"], "data": {"url": "x"}}, ws.Punished, "fresh browser login"),
    (500, f'{{"error": "upstream failed for refresh_token={REFRESH} token {TOKEN}"}}', ws.RefreshError, "HTTP 500"),
    (200, {"success": True, "data": {}}, ws.RefreshError, "no token"),
    (200, "not json", ws.RefreshError, "not JSON"),
])
def test_refusals_and_failures_are_told_apart_and_redacted(stub, status, body, error, says):
    stub.queue(status, body)
    with pytest.raises(error) as e:
        run(ws.refresh(sample_session(), stub.url))
    assert says in str(e.value)
    assert all(s not in str(e.value) for s in SECRETS)


def test_unreachable_refresh_server_and_a_session_without_refresh_cookie(stub):
    stub.close()
    with pytest.raises(ws.RefreshError, match="could not be reached"):
        run(ws.refresh(sample_session(), stub.url))
    bare = sample_session(cookies=tuple(c for c in sample_session().cookies if c["name"] != "refresh_token"))
    with pytest.raises(ws.NeedsLogin, match="no refresh_token cookie"):
        run(ws.refresh(bare, "http://127.0.0.1:9"))


def test_a_deleted_cookie_leaves_the_jar():
    s = ws.apply_refresh(sample_session(), {"data": {"token": NEW}},
                         ws.set_cookies(["cna=; Domain=.qwen.ai; Max-Age=0", "other=1; Domain=.example.com"], NOW))
    assert wc.find(s.cookies, "cna") is None and wc.find(s.cookies, "other") is None
