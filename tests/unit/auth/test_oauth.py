"""OAuth refresh against a scripted token endpoint served from a thread on loopback (no process): what an
error reply may leak, one refresh per 401 storm, the wait after a failed refresh."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qwen_gateway.accounts import AccountUnavailable
from qwen_gateway.auth import oauth
from qwen_gateway.cli import auth as cli
from qwen_gateway.auth.credfile import LOGIN_ORDER, read_creds, write_creds
from qwen_gateway.auth.names import DEFAULT
from qwen_gateway.upstream.pool.pool import AccountPool
from qwen_gateway.settings.auth import AuthSettings
from helpers.oauth_stub import OAuthStub


@pytest.fixture
def stub():
    s = OAuthStub()
    yield s
    s.close()


@pytest.fixture
def settings(tmp_path, stub) -> AuthSettings:
    return AuthSettings.from_env(qwen_dir=tmp_path / ".qwen", state_dir=tmp_path / "state",
                                 oauth_base_url=stub.url, default_api_base="http://127.0.0.1:9/v1")


def seed(settings: AuthSettings, *, expires_in: float, access: str | None = None,
         refresh: str | None = None) -> tuple[str, str]:
    access = access or f"at-{secrets.token_urlsafe(30)}"
    refresh = refresh or f"rt-{secrets.token_urlsafe(30)}"
    write_creds(settings.default_creds_path, {"access_token": access, "refresh_token": refresh,
                                              "token_type": "Bearer", "resource_url": "portal.qwen.ai",
                                              "expiry_date": int((time.time() + expires_in) * 1000)}, LOGIN_ORDER)
    return access, refresh


# ---- nothing token-shaped from an error reply is stored or shown ------------------------------------------


def _echoes(rt: str, at: str, new: str) -> dict:
    """Error replies that echo the refresh token sent, the access token held and a new access token."""
    cut = json.dumps({"error": "server_error", "error_description": "upstream timeout " + "." * 250,
                      "access_token": new, "refresh_token": rt})
    return {
        "500 json echo": (500, {"error": "server_error", "error_description": f"refresh failed for {rt}",
                                "access_token": new, "debug": f"Authorization: Bearer {at}"}),
        "502 text echo": (502, f"bad gateway: grant_type=refresh_token&refresh_token={rt}&new={new}"),
        "503 json cut at 300 bytes": (503, cut),  # the new token straddles the cut
        "200 with an error": (200, {"error": "temporarily_unavailable", "error_description": f"new token {new}",
                                    "id_token": at}),
        "200 not json": (200, f"<html>token={new} refresh_token={rt}</html>"),
        "400 rejected": (400, {"error": "invalid_request",
                               "error_description": f"Invalid refresh token {rt} or client_id; now {new}"}),
        "401 rejected": (401, {"error": f"invalid_grant {new}", "error_description": rt}),
    }


@pytest.mark.parametrize("case", list(_echoes("r", "a", "n")))
async def test_oauth_error_replies_are_redacted_everywhere(stub, settings, case, capsys):
    at, rt = seed(settings, expires_in=10)  # inside the 30 s buffer: a refresh is due
    new = f"new-{secrets.token_urlsafe(32)}"
    status, body = _echoes(rt, at, new)[case]
    stub.queue(status, body)
    secrets_ = (at, rt, new)
    pool = AccountPool.from_settings(settings)
    with pytest.raises(AccountUnavailable) as e:
        await pool.acquire()
    assert stub.refreshes == 1 and stub.requests[0]["form"]["refresh_token"] == rt  # it was really sent
    shown = [str(e.value), json.dumps(pool.status()), *pool.describe()]  # client error, /health, start-up
    assert "<redacted>" in "".join(shown)
    stored_error = pool.state.get(DEFAULT)["last_error"]
    assert stored_error and stored_error in pool.status()[0]["last_error"]
    pool.flush()
    pool.close()
    for args in (["status"], ["status", "--json"], ["list", "--json"]):
        assert cli.main(["--qwen-dir", str(settings.qwen_dir), "--state-dir", str(settings.state_dir),
                         "--oauth-base-url", stub.url, *args]) == 0
        out = capsys.readouterr()
        shown.append(out.out + out.err)
    stored = b"".join(p.read_bytes() for p in settings.state_dir.iterdir() if p.name.startswith("state.sqlite3"))
    assert stored_error.encode() in stored  # the row is in the bytes we search
    for s in secrets_:
        assert not any(s in text for text in shown), (case, s)
        assert s.encode() not in stored, (case, s)
        assert s[:12] not in "".join(shown), (case, s)  # not even a piece of it
    assert read_creds(settings.default_creds_path)["refresh_token"] == rt  # the login is never rewritten


# ---- a 401 storm costs one refresh per backoff window -------------------------------------------------------


async def test_a_401_storm_costs_one_refresh(stub, settings):
    stub.delay_s = 0.1
    old, _ = seed(settings, expires_in=3600)
    pool = AccountPool.from_settings(settings)
    wave = await asyncio.gather(*(pool.refreshed(DEFAULT) for _ in range(25)))
    assert stub.refreshes == 1 and {c.token for c in wave} == {stub.issued[0]["access_token"]}
    # 401s that come back after the refresh (requests sent with the old token, or the new one refused)
    late = await asyncio.gather(*(pool.refreshed(DEFAULT, refused=old) for _ in range(25)),
                                *(pool.refreshed(DEFAULT) for _ in range(25)),
                                *(pool.refreshed(DEFAULT, refused=wave[0].token) for _ in range(5)))
    assert stub.refreshes == 1 and {c.token for c in late} == {wave[0].token}
    assert read_creds(settings.default_creds_path)["access_token"] == wave[0].token
    settings.refresh_backoff_s = 0.1  # the window is over: the next 401 refreshes again
    await asyncio.sleep(0.15)
    again = await asyncio.gather(*(pool.refreshed(DEFAULT) for _ in range(10)))
    assert stub.refreshes == 2 and {c.token for c in again} == {stub.issued[1]["access_token"]}
    # a token someone else already replaced is never refreshed, window or not
    settings.refresh_backoff_s = 0
    assert (await pool.refreshed(DEFAULT, refused=wave[0].token)).token == again[0].token
    assert stub.refreshes == 2
    pool.close()


async def test_failed_refresh_waits_refresh_retry_s(stub, settings):
    settings.refresh_retry_s = 3600
    seed(settings, expires_in=10)
    stub.queue(503, {"error": "temporarily_unavailable"})
    pool = AccountPool.from_settings(settings)
    for _ in range(3):
        with pytest.raises(AccountUnavailable, match="Token refresh failed: 503"):
            await pool.acquire()
    assert stub.refreshes == 1 and pool.status()[0]["state"] == "error"  # no hammering
    assert (await pool.refreshed(DEFAULT)).token == stub.issued[0]["access_token"]  # a 401 retry tries at once
    assert stub.refreshes == 2 and pool.status()[0]["state"] == "ok"
    stub.queue(503, {"error": "temporarily_unavailable"})
    seed(settings, expires_in=10)
    settings.refresh_retry_s = 0  # no wait: the next request tries again
    pool.get(DEFAULT).file_check_s = 0
    with pytest.raises(AccountUnavailable):
        await pool.acquire()
    assert (await pool.acquire()).token == stub.issued[1]["access_token"] and stub.refreshes == 4
    pool.close()


def test_oauth_calls_carry_qwen_codes_fingerprint(stub, settings):
    seed(settings, expires_in=10)
    pool = AccountPool.from_settings(settings)
    asyncio.run(pool.acquire())
    pool.close()
    h = stub.requests[0]["headers"]
    assert (h["user-agent"], h["accept-encoding"], h["accept-language"], h["sec-fetch-mode"]) == \
        ("node", "gzip, deflate", "*", "cors")
    assert h["content-type"] == "application/x-www-form-urlencoded" and h["accept"] == "application/json"


# ---- OAuth wire details ------------------------------------------------------------------------------


def test_pkce_pair_is_s256():
    verifier, challenge = oauth.pkce_pair()
    assert len(verifier) == 43 and set(verifier) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge == expected and "=" not in challenge and len(challenge) == 43
    assert oauth.pkce_pair()[0] != verifier


def test_form_encoding_is_encode_uri_component():
    body = oauth.form({"scope": oauth.SCOPE, "x": "a+b/c=d&e"}).decode()
    assert body == "scope=openid%20profile%20email%20model.completion&x=a%2Bb%2Fc%3Dd%26e"


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=20), max_size=5))
def test_form_never_uses_plus_for_spaces(d):
    assert "+" not in oauth.form(d).decode()


def test_creds_from_token_keeps_refresh_token_and_resource_url():
    old = {"access_token": "a0", "refresh_token": "r0", "token_type": "Bearer", "resource_url": "portal.qwen.ai",
           "expiry_date": 1}
    new = oauth.creds_from_token({"access_token": "a1", "token_type": "Bearer", "expires_in": 60}, previous=old,
                                 now_ms=1_000_000)
    assert new == {"access_token": "a1", "token_type": "Bearer", "refresh_token": "r0",
                   "resource_url": "portal.qwen.ai", "expiry_date": 1_060_000}
    rotated = oauth.creds_from_token({"access_token": "a2", "refresh_token": "r2", "resource_url": "other.host",
                                      "expires_in": 10}, previous=old, now_ms=0)
    assert rotated["refresh_token"] == "r2" and rotated["resource_url"] == "other.host"


def test_form_matches_urlencode_quote():
    d = {"grant_type": oauth.DEVICE_GRANT, "client_id": "id", "device_code": "d c"}
    assert oauth.form(d) == urlencode(d, quote_via=quote).encode()
