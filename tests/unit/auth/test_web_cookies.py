"""A browser's Qwen Chat cookies (auth/web_cookies.py): the three export formats and a pasted Cookie header, only
live qwen.ai cookies kept, one jar per host, broken inputs named without quoting a value, a JWT's expiry."""

from __future__ import annotations

import json

import pytest

from qwen_gateway.auth import web_cookies as wc
from helpers.qwen_web_auth import FAR, HEADER, ITNA, NETSCAPE, NOW, PLAYWRIGHT, REFRESH, TOKEN, b64, jwt


def by_name(cookies) -> dict[str, dict]:
    return {c["name"]: c for c in cookies}


def test_netscape_export_keeps_only_live_qwen_cookies_httponly_included():
    cookies, ls_token, fmt = wc.parse_file(NETSCAPE)
    assert fmt == "Netscape cookies.txt" and ls_token is None
    kept = wc.keep(cookies, now=NOW)
    assert sorted(by_name(kept)) == ["acw_tc", "cna", "refresh_token", "ssxmod_itna", "ssxmod_itna2", "token", "x-ap"]
    assert by_name(kept)["refresh_token"]["value"] == REFRESH  # the #HttpOnly_ line is a cookie, not a comment
    assert by_name(kept)["acw_tc"]["expires"] == 0  # a session cookie
    assert by_name(kept)["cna"]["value"] == "cna-Ab12Cd34Ef56"  # .alicdn.com's cna is another site's
    assert wc.find(kept, "token") == TOKEN and wc.find(kept, "refresh_token") == REFRESH


def test_playwright_storage_state_gives_cookies_and_the_localstorage_token():
    cookies, ls_token, fmt = wc.parse_file(PLAYWRIGHT)
    assert fmt == "Playwright storageState" and ls_token == TOKEN
    kept = wc.keep(cookies, now=NOW)
    assert sorted(by_name(kept)) == ["acw_tc", "refresh_token", "ssxmod_itna"]
    assert by_name(kept)["acw_tc"]["expires"] == 0  # -1: a session cookie
    assert wc.find(kept, "token") is None  # gen B: the token lives in localStorage only


def test_cookie_editor_json_list_is_read_too():
    cookies, ls_token, fmt = wc.parse_file(json.dumps([
        {"domain": ".qwen.ai", "expirationDate": FAR, "hostOnly": False, "httpOnly": True, "name": "token",
         "path": "/", "sameSite": "lax", "secure": True, "session": False, "value": TOKEN}]))
    assert fmt == "JSON cookie list" and ls_token is None and wc.find(wc.keep(cookies), "token") == TOKEN


def test_pasted_cookie_header_prefix_and_line_breaks_tolerated():
    cookies = wc.keep(wc.parse_header(HEADER))
    assert [c["name"] for c in cookies] == ["cna", "token", "ssxmod_itna", "refresh_token"]
    assert all(c["domain"] == ".qwen.ai" for c in cookies)  # no domains in a header: sent to every qwen.ai host
    assert wc.for_host(cookies, wc.CHAT_HOST)["ssxmod_itna"] == ITNA
    assert wc.for_host(cookies, wc.AUTH_HOST)["refresh_token"] == REFRESH


def test_the_most_specific_domain_wins_a_name_and_hosts_get_their_own_jar():
    cookies = [wc.make_cookie("token", "parent", ".qwen.ai"), wc.make_cookie("token", "chat", "chat.qwen.ai"),
               wc.make_cookie("x", "1", "chat.qwen.ai")]
    assert wc.for_host(cookies, "chat.qwen.ai") == {"token": "chat", "x": "1"}
    assert wc.for_host(cookies, "auth.qwen.ai") == {"token": "parent"}
    assert wc.header({"a": "1", "b": "2"}) == "a=1; b=2"


@pytest.mark.parametrize("text, says", [
    ("hello world", "not a cookie export"),
    (f".qwen.ai\tTRUE\t/\t{TOKEN}", "line 1 is not a cookies.txt line"),
    (f".qwen.ai\tTRUE\t/\tTRUE\tsoon\ttoken\t{TOKEN}", "expiry field is not a number"),
    ('{"cookies": [{"name": "token"}]}', "no string name and value"),
    ('{"cookies": ', "not valid JSON"),
    ('{"origins": []}', "Playwright storageState"),
])
def test_broken_inputs_are_named_without_quoting_a_value(text, says):
    with pytest.raises(wc.CookieFormatError) as e:
        wc.parse_file(text)
    assert says in str(e.value) and TOKEN not in str(e.value)


def test_bad_cookie_header():
    with pytest.raises(wc.CookieFormatError, match="name=value"):
        wc.parse_header(f"{TOKEN}")
    with pytest.raises(wc.CookieFormatError, match="empty"):
        wc.parse_header("Cookie: ;")


def test_jwt_exp_is_read_without_verifying():
    assert wc.jwt_exp(jwt(1790000000)) == 1790000000.0
    assert wc.jwt_claims(TOKEN)["type"] == "access_token"
    assert wc.jwt_exp(jwt(None)) is None
    assert wc.jwt_exp("opaque-session-token") is None
    assert wc.jwt_exp("a.!!!not-base64!!!.c") is None
    assert wc.jwt_exp(f"a.{b64({'exp': 'soon'})}.c") is None
