"""Qwen Chat web accounts without a process (issue #24 item 1): the three cookie formats, the session file
(0600, atomic), the refresh through auth.qwen.ai against a scripted server on loopback (served from a
thread of this process), the account behind the pool, the opt-in, and no secret in anything shown."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from qwen_gateway.accounts import KEY, OAUTH, WEB, Credential
from qwen_gateway.auth import web_cookies as wc
from qwen_gateway.auth import web_session as ws
from qwen_gateway.auth.pool import AccountPool, PoolExhausted
from qwen_gateway.auth.registry import Registry
from qwen_gateway.auth.state import AccountState
from qwen_gateway.auth.web_account import NOT_SERVED, WEB_WARNING, WebAccount
from qwen_gateway.settings.auth import AuthSettings

NOW = time.time()
FAR = int(NOW) + 30 * 86400
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/151.0.0.0 Safari/537.36"


def b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def jwt(exp: float | None, **claims) -> str:
    """A JWT as the SPA gets it (the signature is never checked by the gateway)."""
    payload = {"id": "9f1c2e4a-user", "type": "access_token", **claims, **({"exp": int(exp)} if exp else {})}
    return f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64(payload)}.Zm9yZ2VkLXNpZ25hdHVyZS0xMjM0NTY3ODkw"


# Long-lived enough that no test meets the refresh margin however late in a run it comes (the real ones
# live ~15 min; the tests that need an expiring one make their own).
TOKEN = jwt(NOW + 12 * 3600)
REFRESH = "rt_7Hq2LmX9vB4nK8pQ1sT6wY3zA5cE0fG"
ITNA = "eqGxRDBDgQiQ3GHD0Dcmi+QNDTxDAUxZe2DDIi4D0Dx7DItx0D"
ITNA2 = "eqGxRDBDgQiQ3GHD0Dcmi+QNDTxDAUxZe2DDIi4D0Dx7DItx0D2"
SECRETS = (TOKEN, REFRESH, ITNA, ITNA2, "acw-tc-0b3f4a9d17563", "x-ap-ap-southeast-1-7", "cna-Ab12Cd34Ef56")

# A "Get cookies.txt LOCALLY" export of a browser logged in at chat.qwen.ai (other sites included).
NETSCAPE = "\n".join([
    "# Netscape HTTP Cookie File",
    "# https://curl.haxx.se/rfc/cookie_spec.html",
    "# This is a generated file! Do not edit.",
    "",
    f".qwen.ai\tTRUE\t/\tTRUE\t{FAR}\ttoken\t{TOKEN}",
    f"#HttpOnly_.qwen.ai\tTRUE\t/\tTRUE\t{FAR}\trefresh_token\t{REFRESH}",
    f"chat.qwen.ai\tFALSE\t/\tFALSE\t{FAR}\tssxmod_itna\t{ITNA}",
    f"chat.qwen.ai\tFALSE\t/\tFALSE\t{FAR}\tssxmod_itna2\t{ITNA2}",
    "#HttpOnly_chat.qwen.ai\tFALSE\t/\tFALSE\t0\tacw_tc\tacw-tc-0b3f4a9d17563",
    f".qwen.ai\tTRUE\t/\tTRUE\t{FAR}\tx-ap\tx-ap-ap-southeast-1-7",
    f".qwen.ai\tTRUE\t/\tFALSE\t{FAR}\tcna\tcna-Ab12Cd34Ef56",
    f".qwen.ai\tTRUE\t/\tTRUE\t{int(NOW) - 3600}\tisg\tisg-expired-value",
    f".google.com\tTRUE\t/\tTRUE\t{FAR}\tNID\tgoogle-nid-value",
    f".alicdn.com\tTRUE\t/\tTRUE\t{FAR}\tcna\talicdn-cna-value",
    f".notqwen.ai\tTRUE\t/\tTRUE\t{FAR}\ttoken\tnot-ours",
]) + "\r\n"

# page.context().storage_state() of a Playwright session logged in at chat.qwen.ai (gen B: token in
# localStorage, no token cookie).
PLAYWRIGHT = json.dumps({
    "cookies": [
        {"name": "refresh_token", "value": REFRESH, "domain": ".qwen.ai", "path": "/", "expires": FAR,
         "httpOnly": True, "secure": True, "sameSite": "Lax"},
        {"name": "ssxmod_itna", "value": ITNA, "domain": "chat.qwen.ai", "path": "/", "expires": FAR,
         "httpOnly": False, "secure": False, "sameSite": "Lax"},
        {"name": "acw_tc", "value": "acw-tc-0b3f4a9d17563", "domain": "chat.qwen.ai", "path": "/",
         "expires": -1, "httpOnly": True, "secure": False, "sameSite": "Lax"},
        {"name": "_ga", "value": "GA1.1.123.456", "domain": ".google-analytics.com", "path": "/", "expires": FAR,
         "httpOnly": False, "secure": False, "sameSite": "Lax"},
    ],
    "origins": [{"origin": "https://chat.qwen.ai", "localStorage": [
        {"name": "i18nextLng", "value": "en-US"}, {"name": "token", "value": TOKEN}]}],
}, indent=2)

HEADER = f"Cookie: cna=cna-Ab12Cd34Ef56; token={TOKEN};\n ssxmod_itna={ITNA}; refresh_token={REFRESH}"


# ---- the formats -----------------------------------------------------------------------------------


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


# ---- the session file --------------------------------------------------------------------------------


def sample_session(**kw) -> ws.Session:
    cookies, _, _ = wc.parse_file(NETSCAPE)
    s = ws.new_session(TOKEN, wc.keep(cookies), user_agent=UA, bx={"bx-ua": "231!bxua-value", "bx-v": "2.5.36"})
    return ws.Session(**{**s.__dict__, **kw})


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


class AuthStub:
    """GET /api/v2/auths/refresh answered by queued (status, body, extra headers) replies."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.replies: deque[tuple[int, object, list[tuple[str, str]]]] = deque()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:
                pass

            def do_GET(self) -> None:
                stub.requests.append({"method": "GET", "path": self.path,
                                      "headers": {k.lower(): v for k, v in self.headers.items()}})
                status, body, extra = stub.replies.popleft() if stub.replies else (500, "no reply queued", [])
                raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html" if isinstance(body, str) else "application/json")
                for k, v in extra:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def queue(self, status: int, body: object, headers: list[tuple[str, str]] | None = None) -> None:
        self.replies.append((status, body, headers or []))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    s = AuthStub()
    yield s
    s.close()


NEW = jwt(NOW + 12 * 3600, n=2)


def run(coro):
    return asyncio.run(coro)


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


# ---- the account, the pool and the opt-in -----------------------------------------------------------------


def settings_for(tmp_path, *, web_accounts: bool, auth_base: str = "http://127.0.0.1:9") -> AuthSettings:
    return AuthSettings.from_env(qwen_dir=tmp_path / ".qwen", state_dir=tmp_path / "state",
                                 oauth_base_url="http://127.0.0.1:9", default_api_base="http://127.0.0.1:9/v1",
                                 web_accounts=web_accounts, web_auth_base_url=auth_base,
                                 web_base_url="http://127.0.0.1:9/web", refresh_wait_s=5)


def import_session(settings: AuthSettings, name: str = "chat", **kw) -> None:
    ws.save(settings.web_session_path(name), sample_session(**kw))
    Registry(settings).put({"name": name, "kind": WEB}, replace=True)


def pool_for(settings: AuthSettings, kinds=None) -> AccountPool:
    return AccountPool.from_settings(settings, kinds=kinds)


def shown(pool: AccountPool) -> str:
    return json.dumps(pool.status()) + "\n".join(pool.describe())


def test_off_by_default_loaded_for_status_never_handed_out(tmp_path):
    s = settings_for(tmp_path, web_accounts=False)
    assert AuthSettings.from_env().web_accounts is False
    import_session(s)
    pool = pool_for(s)
    try:
        with pytest.raises(PoolExhausted) as e:
            run(pool.acquire())
        assert "chat: disabled: --set qwen_web_accounts=true" in str(e.value) and not e.value.needs_login
        row = pool.status()[0]
        assert (row["kind"], row["state"], row["session"], row["refresh"]) == ("web", "disabled", "ok", "possible")
        assert 0 < row["expires_in_s"] <= 12 * 3600 and row["last_punish"] is None and row["cookies"] == 7
        assert row["bx_headers"] == ["bx-ua", "bx-v"]
        assert WEB_WARNING not in pool.describe()
        assert all(x not in shown(pool) for x in (*SECRETS, "231!bxua-value"))
    finally:
        pool.close()


def test_opted_in_but_no_upstream_for_the_kind_is_never_acquired(tmp_path):
    s = settings_for(tmp_path, web_accounts=True)
    import_session(s)
    pool = pool_for(s, kinds=(OAUTH, KEY))  # what the gateway's pairing serves today
    try:
        with pytest.raises(PoolExhausted) as e:
            run(pool.acquire())
        assert NOT_SERVED in str(e.value) and not e.value.needs_login and e.value.retry_at is None
        assert pool.status()[0]["state"] == "unserved" and pool.status()[0]["last_error"] == NOT_SERVED
        lines = pool.describe()
        assert lines.count(WEB_WARNING) == 1 and "ban" in WEB_WARNING and "terms" in WEB_WARNING
        assert all(x not in shown(pool) for x in SECRETS)
    finally:
        pool.close()


def test_opted_in_with_an_upstream_hands_out_token_jar_and_browser_headers(tmp_path):
    s = settings_for(tmp_path, web_accounts=True)
    import_session(s)
    pool = pool_for(s, kinds=(OAUTH, KEY, WEB))  # once the web upstream is in the pairing
    try:
        cred = run(pool.acquire())
        assert (cred.kind, cred.base_url, cred.token) == (WEB, "http://127.0.0.1:9/web", TOKEN)
        assert cred.cookies["ssxmod_itna"] == ITNA and cred.cookies["token"] == TOKEN
        assert dict(cred.headers) == {"user-agent": UA, "bx-ua": "231!bxua-value", "bx-v": "2.5.36"}
    finally:
        pool.close()


def test_an_expiring_session_is_refreshed_and_the_new_one_stored_0600(tmp_path, stub):
    s = settings_for(tmp_path, web_accounts=True, auth_base=stub.url)
    import_session(s, token=jwt(NOW + 20), expires_at=NOW + 20)  # within the refresh margin
    stub.queue(200, {"success": True, "data": {"access_token": NEW, "refresh_token": "rt-rotated-2"}})
    pool = pool_for(s)
    try:
        assert run(pool.acquire()).token == NEW
        path = s.web_session_path("chat")
        on_disk = ws.load(path)
        assert on_disk.token == NEW and on_disk.refresh_token == "rt-rotated-2"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(stub.requests) == 1
        assert run(pool.acquire()).token == NEW and len(stub.requests) == 1  # fresh now: no second refresh
    finally:
        pool.close()


def test_a_refused_refresh_needs_a_new_import_and_the_import_clears_it(tmp_path, stub):
    s = settings_for(tmp_path, web_accounts=True, auth_base=stub.url)
    import_session(s, token=jwt(NOW - 60), expires_at=NOW - 60)
    stub.queue(401, {"detail": "Unauthorized"})
    pool = pool_for(s)
    try:
        with pytest.raises(PoolExhausted) as e:
            run(pool.acquire())
        assert "add-web chat --replace" in str(e.value) and e.value.needs_login
        assert pool.status()[0]["state"] == "needs_login"
        assert ws.load(s.web_session_path("chat")) is not None  # never deleted
        import_session(s)  # what `qwen-auth add-web chat --replace` writes
        path = s.web_session_path("chat")
        later = path.stat().st_mtime + 5  # a newer file than the refusal, whatever the clock's resolution
        os.utime(path, (later, later))
        pool.get("chat")._checked = float("-inf")
        assert run(pool.acquire()).token == TOKEN
    finally:
        pool.close()


def test_a_punish_page_parks_the_account_and_is_shown_as_last_punish(tmp_path, stub):
    s = settings_for(tmp_path, web_accounts=True, auth_base=stub.url)
    import_session(s, token=jwt(NOW - 60), expires_at=NOW - 60)
    stub.queue(200, "<html>aliyun_waf slider ... _____tmd_____/punish?x5secdata=xyz</html>")
    pool = pool_for(s)
    try:
        with pytest.raises(PoolExhausted):
            run(pool.acquire())
        with pytest.raises(PoolExhausted):
            run(pool.acquire())
        assert len(stub.requests) == 1  # parked: never retried in a loop
        row = pool.status()[0]
        assert row["state"] == "needs_login" and row["last_punish"] and "fresh browser login" in row["last_error"]
    finally:
        pool.close()


def test_record_punish_for_the_web_upstream(tmp_path):
    s = settings_for(tmp_path, web_accounts=True)
    import_session(s)
    state = AccountState(s.state_db_path)
    try:
        acct = WebAccount("chat", s.web_session_path("chat"), s, state)
        acct.record_punish()
        assert ws.load(acct.path).last_punish and state.get("chat")["needs_login"]
        assert acct.status()["state"] == "needs_login" and acct.status()["last_punish"]
    finally:
        state.close()


def test_an_expired_session_without_refresh_cookie_names_the_fix(tmp_path):
    s = settings_for(tmp_path, web_accounts=True)
    bare = tuple(c for c in sample_session().cookies if c["name"] != "refresh_token")
    import_session(s, token=jwt(NOW - 60), expires_at=NOW - 60, cookies=bare)
    pool = pool_for(s)
    try:
        with pytest.raises(PoolExhausted) as e:
            run(pool.acquire())
        assert "no refresh_token cookie" in str(e.value) and "qwen-auth add-web chat --replace" in str(e.value)
        row = pool.status()[0]
        assert row["state"] == "needs_login" and row["refresh"].startswith("impossible")
    finally:
        pool.close()


def test_a_cooling_down_web_account_says_so(tmp_path):
    s = settings_for(tmp_path, web_accounts=True)
    import_session(s)
    pool = pool_for(s)
    try:
        pool.report("chat", "throttle", retry_after=20)
        row = pool.status()[0]
        assert row["state"] == "cooling_down" and row["cooldown_until"]
    finally:
        pool.close()
