"""The emulator's Qwen Chat web API (chat.qwen.ai, qwen-web-protocol.md), driven over HTTP as a web client would:
a session minted through the admin API, `chats/new`, a completion streamed frame by frame, multi-turn with
`parent_id`, the refresh on auth.qwen.ai, the catalogue. Errors, faults and the punish page:
tests/emulation/test_emulator_web_errors.py."""

from __future__ import annotations

import base64
import json
import threading

import httpx
import pytest

from emulation.test_emulator import Emu, emulator_fixtures

pytestmark = pytest.mark.e2e  # starts emulator processes

MODEL = "qwen3.7-plus"
# The SPA's header set (qwen-web-protocol.md §1.3), as a gateway would send it.
BROWSER = {"source": "web", "version": "0.2.66", "timezone": "Tue Sep 22 2026 04:13:35 GMT+0800",
           "x-accel-buffering": "no", "Accept": "application/json", "Origin": "https://chat.qwen.ai",
           "Referer": "https://chat.qwen.ai/", "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/150.0"}

proc, emu = emulator_fixtures("--quiet")


class Web:
    """A web client of the emulator: the browser's headers, its cookie jar, the Bearer token."""

    def __init__(self, emu: Emu) -> None:
        self.emu = emu
        self.http = emu.http

    def session(self, **kw) -> dict:
        return self.emu.admin("POST", "web/session", kw)

    def headers(self, s: dict, *, bearer: bool = True, cookies: dict | None = None, **extra) -> dict:
        jar = s["cookies"] if cookies is None else cookies
        h = {**BROWSER, **({"Authorization": f"Bearer {s['access_token']}"} if bearer else {}), **extra}
        if jar:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        return {k: v for k, v in h.items() if v is not None}

    def new_chat(self, s: dict, model: str = MODEL, **extra) -> httpx.Response:
        body = {"title": "New Chat", "models": [model], "chat_mode": "normal", "chat_type": "t2t",
                "timestamp": 1790000000000, "project_id": ""}
        return self.http.post("/api/v2/chats/new", json=body, headers=self.headers(s, bearer=False, **extra))

    def chat_id(self, s: dict, model: str = MODEL) -> str:
        r = self.new_chat(s, model)
        assert r.status_code == 200 and r.json()["success"] is True, r.text
        return r.json()["data"]["id"]

    @staticmethod
    def body(chat_id: str, text: str, parent: str | None = None, *, thinking: bool = False,
             fmt: str = "summary", model: str = MODEL, **over) -> dict:
        node = {"id": None, "fid": "0b0e2f44-7d61-4c4e-9d2e-6f0d1f6c1a11", "parentId": parent, "childrenIds": [],
                "role": "user", "content": text, "user_action": "chat", "files": [], "timestamp": 1790000000,
                "models": [model], "model": "", "chat_type": "t2t", "sub_chat_type": "t2t",
                "extra": {"meta": {"subChatType": "t2t"}},
                "feature_config": {"thinking_enabled": thinking, "output_schema": "phase"}}
        body = {"stream": True, "version": "2.1", "incremental_output": True, "chat_id": chat_id, "chatId": chat_id,
                "chat_mode": "normal", "model": model, "parent_id": parent, "parentId": parent, "messages": [node],
                "timestamp": 1790000000,
                "feature_config": {"thinking_enabled": thinking, "thinking_format": fmt, "output_schema": "phase",
                                   "research_mode": "normal", "auto_search": False}}
        return {**body, **over}

    def complete(self, s: dict, chat_id: str, text: str = "hello", parent: str | None = None, *,
                 headers: dict | None = None, **kw) -> httpx.Response:
        return self.http.post(f"/api/v2/chat/completions?chat_id={chat_id}", json=self.body(chat_id, text, parent, **kw),
                              headers=self.headers(s) if headers is None else headers)


def frames(r: httpx.Response) -> list[dict]:
    """The SSE frames of a completion: `data: <json>` only, no `event:` line, never `[DONE]`."""
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), r.text
    assert r.text.endswith("\n\n")
    out = []
    for event in r.text[:-2].split("\n\n"):
        assert event.startswith("data: ") and "\n" not in event, event
        assert event != "data: [DONE]"
        out.append(json.loads(event[6:]))
    return out


def deltas(fs: list[dict]) -> list[dict]:
    return [f["choices"][0]["delta"] for f in fs if f.get("choices")]


def answer_text(fs: list[dict]) -> str:
    return "".join(d["content"] for d in deltas(fs) if d.get("phase") == "answer")


@pytest.fixture
def web(emu) -> Web:
    return Web(emu)


# ---- sessions, catalogue, chats ---------------------------------------------------------------


def test_a_minted_session_is_a_browser_session(web):
    s = web.session()
    assert s["session"].startswith("ws-") and s["expires_in"] == 900  # gen C: 15 min access tokens
    claims = json.loads(base64.urlsafe_b64decode(s["access_token"].split(".")[1] + "=="))
    assert claims["type"] == "access_token" and claims["exp"] == s["expires_at"]
    jar = s["cookies"]
    assert jar["token"] == s["access_token"] and jar["refresh_token"] == s["refresh_token"]
    assert {"ssxmod_itna", "ssxmod_itna2", "acw_tc", "x-ap", "cna", "tfstk", "isg"} <= set(jar)
    assert s["cookie_header"] == "; ".join(f"{k}={v}" for k, v in jar.items())
    # the import formats a user pastes: a Netscape cookies.txt and a Playwright storageState
    lines = [ln.split("\t") for ln in s["cookies_txt"].splitlines() if ln and not ln.startswith("#")]
    assert {(ln[0], ln[5], ln[6]) for ln in lines} == {(".qwen.ai", k, v) for k, v in jar.items()}
    assert {c["name"]: c["value"] for c in s["storage_state"]["cookies"]} == jar


def test_models_need_no_auth(web):
    r = web.http.get("/api/models")
    assert r.status_code == 200
    models = {m["id"]: m for m in r.json()["data"]}
    assert {"qwen3.7-plus", "qwen3.8-max"} <= set(models)
    meta = models["qwen3.7-plus"]["info"]["meta"]
    assert meta["abilities"]["thinking"] is True and "t2t" in meta["chat_type"] and "search" in meta["chat_type"]
    assert any(m["info"]["meta"]["abilities"]["thinking"] is False for m in models.values())
    assert all({"id", "name", "owned_by"} <= set(m) and "created_at" in m["info"] for m in models.values())
    web.emu.admin("POST", "web/switches", {"models": ["qwen3.9-plus"]})  # ids rotate
    assert [m["id"] for m in web.http.get("/api/models").json()["data"]] == ["qwen3.9-plus"]


def test_chats_new_is_cookie_only_and_answers_the_chat_id(web):
    s = web.session()
    r = web.new_chat(s)
    assert r.status_code == 200 and r.json()["success"] is True and r.json()["request_id"]
    assert r.json()["data"]["id"]
    # a Bearer header there: DIAG's cookie-only route (the emulator refuses it; the live answer is unknown)
    r = web.http.post("/api/v2/chats/new", json={"models": [MODEL], "chat_type": "t2t"}, headers=web.headers(s))
    assert r.json()["success"] is False and r.json()["data"]["code"] == "Bad_Request"
    # no token cookie: anonymous, and guest mode is gone (401)
    anon = {k: v for k, v in s["cookies"].items() if k != "token"}
    assert web.new_chat(s, cookies=anon).status_code == 401


# ---- a completion, frame by frame --------------------------------------------------------------


def test_completion_streams_phases_with_cumulative_usage_and_no_done(web):
    s = web.session()
    cid = web.chat_id(s)
    fs = frames(web.complete(s, cid, "what is two and two"))
    created = fs[0]["response.created"]
    assert created["chat_id"] == cid and created["parent_id"] is None and created["response_id"]
    assert answer_text(fs) == "Echo: what is two and two"
    ds = deltas(fs)
    assert {d["phase"] for d in ds} == {"answer"}  # thinking off: answer only
    assert all(f["response_id"] == created["response_id"] for f in fs[1:])
    usage = [f["usage"] for f in fs if "usage" in f]
    outs = [u["output_tokens"] for u in usage]
    assert len(usage) >= 3 and outs == sorted(outs) and outs[0] < outs[-1]  # cumulative
    assert all(u["total_tokens"] == u["input_tokens"] + u["output_tokens"] for u in usage)
    assert ds[-1] == {"content": "", "role": "assistant", "status": "finished", "phase": "answer"}
    assert all(d["status"] == "typing" for d in ds[:-1])


def test_thinking_summary_then_answer(web):
    s = web.session()
    fs = frames(web.complete(s, web.chat_id(s), "think first", thinking=True, fmt="summary"))
    ds = deltas(fs)
    phases = [d["phase"] for d in ds]
    first_answer = phases.index("answer")
    assert set(phases[:first_answer]) == {"thinking_summary"} and set(phases[first_answer:]) == {"answer"}
    thoughts = [d for d in ds if d["phase"] == "thinking_summary"]
    assert all(d["content"] == "" for d in thoughts)  # summary text lives in extra, never in content
    grown = [d["extra"]["summary_thought"]["content"] for d in thoughts]
    assert all(a == b[:len(a)] for a, b in zip(grown, grown[1:])) and len(grown[-1]) > len(grown[0])
    # thinking_summary finishes too: only phase answer + status finished ends the stream
    assert thoughts[-1]["status"] == "finished" and ds[-1]["phase"] == "answer" and ds[-1]["status"] == "finished"
    assert answer_text(fs) == "Echo: think first"


def test_thinking_detail_is_think_phase_content(web):
    s = web.session()
    ds = deltas(frames(web.complete(s, web.chat_id(s), "detail please", thinking=True, fmt="detail")))
    think = "".join(d["content"] for d in ds if d["phase"] == "think")
    assert think == "Thinking about: detail please" and ds[0]["phase"] == "think"


def test_a_model_that_cannot_think_does_not(web):
    s = web.session()
    model = next(m["id"] for m in web.http.get("/api/models").json()["data"]
                 if not m["info"]["meta"]["abilities"]["thinking"])
    ds = deltas(frames(web.complete(s, web.chat_id(s, model), "x", thinking=True, model=model)))
    assert {d["phase"] for d in ds} == {"answer"}


def test_without_output_schema_phase_no_frame_has_a_phase(web):
    s = web.session()
    cid = web.chat_id(s)
    fs = frames(web.complete(s, cid, "x", feature_config={"thinking_enabled": False}))
    assert all("phase" not in d for d in deltas(fs))


def test_incremental_output_false_sends_the_text_so_far(web):
    s = web.session()
    ds = deltas(frames(web.complete(s, web.chat_id(s), "a b c", incremental_output=False)))
    texts = [d["content"] for d in ds if d["status"] == "typing"]
    assert texts[-1] == "Echo: a b c" and all(b.startswith(a) for a, b in zip(texts, texts[1:]))


def test_tool_call_switch_splits_a_tool_call_block_across_frames(web):
    call = {"name": "get_weather", "arguments": {"location": "Paris"}}
    web.emu.admin("POST", "web/switches", {"tool_call": call})
    s = web.session()
    ds = deltas(frames(web.complete(s, web.chat_id(s), "weather?")))
    pieces = [d["content"] for d in ds if d["status"] == "typing"]
    text = "".join(pieces)
    assert text.startswith("<tool_call>") and text.endswith("</tool_call>")
    assert json.loads(text[len("<tool_call>"):-len("</tool_call>")]) == call
    assert not any("<tool_call>" in p or "</tool_call>" in p for p in pieces)  # the tags themselves are split


def test_tool_call_times_calls_that_often_then_answers(web):
    """A client's tool round trip (Codex runs the tool, then asks again): the call, then the reply."""
    call = {"name": "exec_command", "arguments": {"cmd": "echo hi"}}
    web.emu.admin("POST", "web/switches", {"tool_call": call, "tool_call_times": 1, "reply": "Done."})
    s = web.session()
    texts = []
    for prompt in ("run it", "Tool result: hi"):
        ds = deltas(frames(web.complete(s, web.chat_id(s), prompt)))
        texts.append("".join(d["content"] for d in ds if d["status"] == "typing"))
    assert texts[0].startswith("<tool_call>") and texts[1] == "Done."
    sw = web.emu.admin("GET", "web/switches")
    assert sw["tool_call"] is None and sw["tool_call_times"] == 0


# ---- multi-turn: parent_id ---------------------------------------------------------------------


def test_parent_id_chain(web):
    s = web.session()
    cid = web.chat_id(s)
    r1 = frames(web.complete(s, cid, "one"))[0]["response.created"]["response_id"]
    f2 = frames(web.complete(s, cid, "two", r1))
    assert f2[0]["response.created"]["parent_id"] == r1
    r2 = f2[0]["response.created"]["response_id"]
    for wrong in (r1, None, "not-a-response"):  # a stale parent, a fresh-chat parent, an unknown one
        r = web.complete(s, cid, "three", wrong)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        assert r.json()["success"] is False and r.json()["data"]["code"] == "Bad_Request", r.text
    assert answer_text(frames(web.complete(s, cid, "three", r2))) == "Echo: three"
    tree = web.http.get(f"/api/v2/chats/{cid}", headers=web.headers(s)).json()["data"]["chat"]["messages"]
    assert [(m["role"], m["content"]) for m in tree] == [
        ("user", "one"), ("assistant", "Echo: one"), ("user", "two"), ("assistant", "Echo: two"),
        ("user", "three"), ("assistant", "Echo: three")]
    assert tree[1]["id"] == r1 and tree[3]["id"] == r2 and tree[2]["parentId"] == r1
    assert tree[0]["childrenIds"] == [tree[1]["id"]]


def test_a_chat_runs_one_generation_at_a_time(web):
    s = web.session()
    cid = web.chat_id(s)
    web.emu.admin("POST", "web/fault", {"kind": "hold"})  # the next generation pauses after response.created
    with web.http.stream("POST", f"/api/v2/chat/completions?chat_id={cid}", json=web.body(cid, "first"),
                         headers=web.headers(s)) as first:
        lines = first.iter_lines()
        assert "response.created" in next(lines)
        second = web.complete(s, cid, "second")
        assert second.json() == {"success": False, "data": {"code": "Bad_Request",
                                                             "details": "The chat is in progress!"}}
        other = web.chat_id(s)  # another chat of the same session is free
        assert answer_text(frames(web.complete(s, other, "elsewhere"))) == "Echo: elsewhere"
        web.emu.admin("POST", "web/release")
        rest = [json.loads(ln[6:]) for ln in lines if ln]
    assert rest[-1]["choices"][0]["delta"]["status"] == "finished"
    parent = web.http.get(f"/api/v2/chats/{cid}", headers=web.headers(s)).json()["data"]["chat"]["messages"][-1]
    assert frames(web.complete(s, cid, "third", parent["id"]))[0]["response.created"]["parent_id"] == parent["id"]


def test_two_concurrent_generations_one_is_refused(web):
    s = web.session()
    cid = web.chat_id(s)
    web.emu.admin("POST", "web/fault", {"kind": "hold"})
    results: list[httpx.Response] = []
    t = threading.Thread(target=lambda: results.append(web.complete(s, cid, "a")))
    t.start()
    try:
        for _ in range(500):  # until the first generation holds the chat (it does until released)
            if web.emu.admin("GET", "web/state")["chats"][cid]["busy"]:
                break
            threading.Event().wait(0.01)
        busy = web.complete(s, cid, "b")
        assert busy.json()["data"]["details"] == "The chat is in progress!"
    finally:
        web.emu.admin("POST", "web/release")
        t.join(10)
    assert answer_text(frames(results[0])) == "Echo: a"


def test_stop_ends_a_generation(web):
    s = web.session()
    cid = web.chat_id(s)
    web.emu.admin("POST", "web/fault", {"kind": "hold"})
    with web.http.stream("POST", f"/api/v2/chat/completions?chat_id={cid}", json=web.body(cid, "long"),
                         headers=web.headers(s)) as r:
        lines = r.iter_lines()
        rid = json.loads(next(lines)[6:])["response.created"]["response_id"]
        stop = web.http.post("/api/v2/chat/stop", json={"chat_id": cid, "response_id": rid}, headers=web.headers(s))
        assert stop.json()["success"] is True
        rest = [json.loads(ln[6:]) for ln in lines if ln]
    assert rest[-1]["choices"][0]["delta"] == {"content": "", "role": "assistant", "status": "finished",
                                               "phase": "answer"}
    assert frames(web.complete(s, cid, "next", rid))[0]["response.created"]["parent_id"] == rid


# ---- refresh on auth.qwen.ai -------------------------------------------------------------------


def refresh(web: Web, jar: dict, **extra) -> httpx.Response:
    headers = {"source": "h5", "version": "0.3.12", "x-request-origin": "https://chat.qwen.ai", **extra,
               "Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())}
    return web.http.get("/api/v2/auths/refresh", headers={k: v for k, v in headers.items() if v is not None})


def test_refresh_rotates_the_access_token(web):
    s = web.session()
    cid = web.chat_id(s)
    r = refresh(web, s["cookies"])
    assert r.status_code == 200 and r.json()["success"] is True
    data = r.json()["data"]
    assert set(data) == {"access_token", "refresh_token"} and data["access_token"] != s["access_token"]
    assert f"refresh_token={data['refresh_token']}" in r.headers["set-cookie"]
    assert "HttpOnly" in r.headers["set-cookie"]
    old = web.complete(s, cid, "old token")
    assert old.json()["data"]["code"] == "Unauthorized"  # the old access token died
    new = {**s, "access_token": data["access_token"],
           "cookies": {**s["cookies"], "token": data["access_token"], "refresh_token": data["refresh_token"]}}
    assert answer_text(frames(web.complete(new, cid, "new token"))) == "Echo: new token"
    assert refresh(web, s["cookies"]).json()["data"]["code"] == "Unauthorized"  # the refresh token rotated
    assert refresh(web, new["cookies"]).json()["success"] is True


def test_refresh_shapes_and_a_refresh_token_that_stays(web):
    s = web.session()
    web.emu.admin("POST", "web/switches", {"rotate_refresh_token": False, "refresh_shape": "token"})
    r = refresh(web, s["cookies"])
    assert set(r.json()["data"]) == {"token"} and "set-cookie" not in r.headers
    web.emu.admin("POST", "web/switches", {"refresh_shape": "expires"})
    assert set(refresh(web, s["cookies"]).json()["data"]) == {"access_token", "expires_at"}


def test_refresh_needs_the_auth_domain_headers(web):
    s = web.session()
    r = refresh(web, s["cookies"], version=None)
    assert r.json() == {"success": False, "data": {"code": "Bad_Request", "details": "Invalid request header"}}


def test_an_expired_access_token_is_unauthorized_until_refreshed(web):
    s = web.session()
    cid = web.chat_id(s)
    web.emu.admin("POST", "web/expire", {"session": s["session"]})
    r = web.complete(s, cid)
    assert r.status_code == 200 and r.headers["x-actual-status-code"] == "401"
    assert r.json()["success"] is False and r.json()["data"]["code"] == "Unauthorized"
    assert web.new_chat(s).json()["success"] is True  # chats/new is no health check (CNDOC §2.6)
    token = refresh(web, s["cookies"]).json()["data"]["access_token"]
    assert answer_text(frames(web.complete({**s, "access_token": token}, cid, "back"))) == "Echo: back"


def test_a_revoked_session_cannot_refresh(web):
    s = web.session()
    web.emu.admin("POST", "web/revoke", {"session": s["session"]})
    assert refresh(web, s["cookies"]).json()["data"]["code"] == "Unauthorized"
    assert web.complete(s, web.chat_id(s)).json()["data"]["code"] == "Unauthorized"
