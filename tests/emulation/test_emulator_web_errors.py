"""The emulator's Qwen Chat web API when things go wrong: the HTTP-200 envelopes, the anti-bot punish replies,
the rules a request must keep (qwen-web-protocol.md §1.3, §1.6, §1.12) and the faults a test queues."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from emulation.test_emulator import emulator_fixtures
from emulation.test_emulator_web import Web, answer_text, deltas, frames

pytestmark = pytest.mark.e2e  # starts emulator processes

proc, emu = emulator_fixtures("--quiet")


@pytest.fixture
def web(emu) -> Web:
    return Web(emu)


def envelope(r: httpx.Response, code: str, actual: str | None = None) -> str:
    """An HTTP-200 JSON error envelope; its details."""
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json"), r.text
    body = r.json()
    assert set(body) == {"success", "data"} and body["success"] is False and body["data"]["code"] == code, body
    if actual:
        assert r.headers["x-actual-status-code"] == actual
    return body["data"]["details"]


def punished(r: httpx.Response, marker: str = "aliyun_waf") -> None:
    assert r.status_code == 200 and marker in r.text, r.text[:300]


# ---- envelopes ---------------------------------------------------------------------------------


def test_rate_limited_envelope_is_the_documented_one(web):
    s = web.session()
    cid = web.chat_id(s)
    web.emu.admin("POST", "web/fault", {"kind": "rate_limited", "num": 3})
    r = web.complete(s, cid)
    assert r.json() == {"success": False, "data": {"code": "RateLimited",
                                                   "details": "You've reached the upper limit for today's usage.",
                                                   "num": 3}}
    assert answer_text(frames(web.complete(s, cid))) == "Echo: hello"  # one fault, one request


def test_daily_limit_answers_rate_limited_with_hours_to_wait(web):
    web.emu.admin("POST", "web/switches", {"daily_limit": 1})
    s = web.session()
    frames(web.complete(s, web.chat_id(s)))
    r = web.complete(s, web.chat_id(s))
    assert envelope(r, "RateLimited") and 1 <= r.json()["data"]["num"] <= 24


@pytest.mark.parametrize("shape", ["envelope", "lower", "http401"])
def test_unauthorized_fault_shapes(web, shape):
    s = web.session()
    cid = web.chat_id(s)
    web.emu.admin("POST", "web/fault", {"kind": "unauthorized", "shape": shape})
    r = web.complete(s, cid)
    if shape == "envelope":
        assert envelope(r, "Unauthorized", "401").startswith("401")
    elif shape == "lower":
        assert r.status_code == 200 and r.json()["data"]["code"] == "unauthorized"
    else:
        assert r.status_code == 401


def test_in_progress_and_bad_request_faults(web):
    s = web.session()
    cid = web.chat_id(s)
    web.emu.admin("POST", "web/fault", {"kind": "in_progress"})
    assert envelope(web.complete(s, cid), "Bad_Request", "400") == "The chat is in progress!"
    web.emu.admin("POST", "web/fault", {"kind": "bad_request", "details": "Something wrong with request!"})
    assert envelope(web.complete(s, cid), "Bad_Request") == "Something wrong with request!"


def test_a_write_without_version_is_a_bad_request(web):
    s = web.session()
    cid = web.chat_id(s)
    envelope(web.complete(s, cid, headers=web.headers(s, version=None)), "Bad_Request", "400")
    envelope(web.new_chat(s, version=None), "Bad_Request", "400")


def test_request_rules(web):
    s = web.session()
    cid = web.chat_id(s)
    post = lambda body, q=cid: web.http.post(f"/api/v2/chat/completions?chat_id={q}", json=body,  # noqa: E731
                                             headers=web.headers(s))
    no_chat_id = {k: v for k, v in web.body(cid, "x").items() if k != "chat_id"}
    r = post(no_chat_id)
    assert r.status_code == 400 and "Field 'chat_id': Field required" in r.text
    assert envelope(post(web.body("0e3f9a52-0000-4000-8000-000000000000", "x"),
                         "0e3f9a52-0000-4000-8000-000000000000"), "Not_Found", "404") == "CHAT_NOT_FOUND"
    other = web.session()  # another account's chat is not found either
    assert envelope(web.complete(other, cid), "Not_Found") == "CHAT_NOT_FOUND"
    envelope(post(web.body(cid, "x", stream=False)), "Bad_Request")
    envelope(post(web.body(cid, "x", model="gpt-4o")), "Not_Found")
    two = web.body(cid, "x")
    two["messages"] = two["messages"] * 2  # one node per request: the new user turn
    envelope(post(two), "Bad_Request")
    assert answer_text(frames(post(web.body(cid, "fine")))) == "Echo: fine"


# ---- the anti-bot punish replies -----------------------------------------------------------------


def test_bearer_without_cookies_is_punished_and_the_session_stays_punished(web):
    s = web.session()
    cid = web.chat_id(s)
    r = web.complete(s, cid, headers=web.headers(s, cookies={}))
    punished(r)
    assert r.headers["content-type"].startswith("text/html") and len(r.content) > 15_000  # the 16 KB slider page
    punished(web.complete(s, cid))  # the risk score stays up: the full jar is punished too now
    web.emu.admin("POST", "web/unpunish", {"session": s["session"]})
    assert answer_text(frames(web.complete(s, cid))) == "Echo: hello"


def test_a_bare_jar_is_punished(web):
    s = web.session()
    bare = {k: s["cookies"][k] for k in ("token", "acw_tc", "x-ap")}
    punished(web.complete(s, web.chat_id(s), headers=web.headers(s, cookies=bare)))


def test_pair_gate_a_token_with_another_sessions_jar_is_punished(web):
    a, b = web.session(), web.session()
    cid = web.chat_id(a)
    punished(web.complete(a, cid, headers=web.headers(a, cookies=b["cookies"])))


@pytest.mark.parametrize("style,ctype,marker", [
    ("waf", "text/html", "aliyun_waf"),
    ("html", "text/html", 'window.location.replace("https://chat.qwen.ai/_____tmd_____/punish?x5secdata='),
    ("json", "application/json", "FAIL_SYS_USER_VALIDATE"),
])
def test_punish_styles(web, style, ctype, marker):
    web.emu.admin("POST", "web/switches", {"punish_style": style})
    s = web.session()
    cid = web.chat_id(s)
    web.emu.admin("POST", "web/punish", {"session": s["session"]})
    r = web.complete(s, cid)
    punished(r, marker)
    assert r.headers["content-type"].startswith(ctype)
    if style == "json":
        body = r.json()
        assert body["ret"][0].startswith("FAIL_SYS_USER_VALIDATE") and "_____tmd_____/punish" in body["data"]["url"]


def post_raw(web: Web, s: dict, cid: str, text: str) -> httpx.Response:
    """A completion whose body is sent as the browser sends it: JSON with the text as raw UTF-8."""
    body = json.dumps(web.body(cid, text), ensure_ascii=False).encode()
    return web.http.post(f"/api/v2/chat/completions?chat_id={cid}", content=body,
                         headers={**web.headers(s), "Content-Type": "application/json"})


def test_the_waf_body_size_rule(web):
    """qwen-web-protocol.md §1.14 (CNDOC U-17): about 50,000 characters pass; 62,000 and more set off x5sec at
    once, and the session stays punished (§1.13)."""
    s = web.session()
    cid = web.chat_id(s)
    ok = post_raw(web, s, cid, "x" * 61_999)
    assert answer_text(frames(ok)) == "Echo: " + "x" * 61_999
    assert web.emu.admin("GET", "web/state")["stats"]["punished"] == 0
    r = post_raw(web, s, web.chat_id(s), "x" * 62_000)
    punished(r)
    assert web.emu.admin("GET", "web/state")["stats"]["punished"] == 1
    punished(web.complete(s, web.chat_id(s), "short"))  # the risk score stays up for the session
    cjk = web.session()  # 50,000 Chinese characters (150,000 bytes of UTF-8) passed in CNDOC's test
    assert answer_text(frames(post_raw(web, cjk, web.chat_id(cjk), "字" * 50_000))).startswith("Echo: 字字")
    emoji = web.session()  # fewer characters, but 62,000 Chinese characters' worth of bytes
    punished(post_raw(web, emoji, web.chat_id(emoji), "😀" * 46_500))


def test_punish_fault_and_refresh_is_never_punished(web):
    s = web.session()
    web.emu.admin("POST", "web/fault", {"kind": "punish"})
    punished(web.complete(s, web.chat_id(s)))
    r = web.http.get("/api/v2/auths/refresh", headers={"version": "0.3.12", "Cookie": s["cookie_header"]})
    assert r.json()["success"] is True  # no WAF slider on refresh (qwen-web-protocol.md §1.2)


def test_bx_headers_when_required(web):
    web.emu.admin("POST", "web/switches", {"require_bx": True})
    s = web.session()
    cid = web.chat_id(s)
    punished(web.complete(s, cid))
    web.emu.admin("POST", "web/unpunish", {"session": s["session"]})
    bx = {"bx-ua": "231!abc", "bx-umidtoken": "T2gA-xyz", "bx-v": "2.5.36"}
    assert answer_text(frames(web.complete(s, cid, headers=web.headers(s, **bx)))) == "Echo: hello"


# ---- stream faults -----------------------------------------------------------------------------


def test_a_stream_that_breaks_off(web):
    s = web.session()
    cid = web.chat_id(s)
    web.emu.admin("POST", "web/fault", {"kind": "break", "after": 2})
    fs = frames(web.complete(s, cid, "one two three four"))
    assert len(fs) == 2 and not any(d.get("status") == "finished" for d in deltas(fs))
    web.emu.admin("POST", "web/fault", {"kind": "break", "after": 2, "how": "reset"})
    with pytest.raises(httpx.TransportError):
        web.complete(s, web.chat_id(s), "one two three four")


def test_an_error_inside_the_stream(web):
    s = web.session()
    cid = web.chat_id(s)
    web.emu.admin("POST", "web/fault", {"kind": "stream_error", "after": 2})
    fs = frames(web.complete(s, cid))
    assert fs[-1] == {"error": "Internal error!"} and len(fs) == 3
    web.emu.admin("POST", "web/fault", {"kind": "stream_error", "error": {"code": "invalid_input", "details": "x"}})
    assert frames(web.complete(s, web.chat_id(s)))[-1] == {"error": {"code": "invalid_input", "details": "x"}}


def test_gap_ms_slows_frames_and_is_a_switch(web):
    web.emu.admin("POST", "web/switches", {"gap_ms": 1})
    assert web.emu.admin("GET", "web/switches")["gap_ms"] == 1
    r = web.http.post("/_emulator/web/switches", json={"no_such_switch": 1})
    assert r.status_code == 400 and "gap_ms" in r.json()["known"]
    r = web.http.post("/_emulator/web/fault", json={"kind": "nonsense"})
    assert r.status_code == 400


# ---- the request log -----------------------------------------------------------------------------


def test_request_log_redacts_cookies_and_tokens(web):
    s = web.session()
    web.http.delete("/_emulator/requests")
    cid = web.chat_id(s)
    frames(web.complete(s, cid, "logged"))
    web.http.get("/api/v2/auths/refresh", headers={"version": "0.3.12", "Cookie": s["cookie_header"]})
    log = web.emu.admin("GET", "requests")
    assert [e["path"].split("?")[0] for e in log] == ["/api/v2/chats/new", "/api/v2/chat/completions",
                                                      "/api/v2/auths/refresh"]
    dump = json.dumps(log)
    for secret in (s["access_token"], s["refresh_token"], *s["cookies"].values()):
        assert secret not in dump
    done = log[1]
    assert done["headers"]["authorization"] == "<redacted>" and done["web_session"] == s["session"]
    names = [c.split("=")[0] for c in done["headers"]["cookie"].split("; ")]
    assert names == list(s["cookies"]) and "token=<redacted>" in done["headers"]["cookie"]
    assert done["body"]["messages"][0]["content"] == "logged"
    assert log[0]["web_session"] == s["session"] and "authorization" not in log[0]["headers"]
    stats = web.emu.admin("GET", "web/state")["stats"]
    assert stats["completions"] == 1 and stats["chats_created"] == 1 and stats["refresh_calls"] == 1


def test_docs_name_every_web_switch_and_fault(web):
    doc = (Path(__file__).resolve().parents[2] / "docs" / "emulator.md").read_text()
    section = doc[doc.index("## Qwen Chat web API"):doc.index("## Admin API")]
    known = web.http.post("/_emulator/web/fault", json={"kind": "?"}).json()["error"]
    kinds = known[known.index("["):].strip("[]").replace("'", "").split(", ")
    assert len(kinds) == 8
    for name in [*web.emu.admin("GET", "web/switches"), *kinds]:
        assert f"`{name}`" in section, name
