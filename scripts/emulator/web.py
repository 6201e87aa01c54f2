"""The Qwen Chat web API (chat.qwen.ai and auth.qwen.ai, both played by this host), after qwen-web-protocol.md:
`GET /api/models`, `POST /api/v2/chats/new`, `POST /api/v2/chat/completions?chat_id=` (SSE frames by phase),
`POST /api/v2/chat/stop`, `GET /api/v2/chats/<id>`, `GET /api/v2/auths/refresh`. Sessions are minted through
`/_emulator/web/…` (web_admin.py); who may call what is web_auth.py's, the frames web_stream.py's."""

from __future__ import annotations

import time
import uuid

from . import web_auth as auth, web_models, web_stream
from .web_auth import send_envelope
from .web_state import WebState, of

CHATS = "/api/v2/chats/"


def owns(path: str) -> bool:
    return path == "/api/models" or path.startswith("/api/v2/")


def route(h, path: str, query: dict, raw: bytes, parsed) -> None:
    w = of(h.state)
    auth.record(h, w, raw, parsed)
    body = parsed if isinstance(parsed, dict) else None
    routes = {"/api/models": {"GET": lambda: h.send_json(200, web_models.catalogue(w.switches))},
              "/api/v2/chats/new": {"POST": lambda: new_chat(h, w, body)},
              "/api/v2/chat/completions": {"POST": lambda: complete(h, w, query, body, raw)},
              "/api/v2/chat/stop": {"POST": lambda: stop(h, w, body)},
              "/api/v2/auths/refresh": {"GET": lambda: refresh(h, w)}}
    if path not in routes and path.startswith(CHATS) and path[len(CHATS):] and "/" not in path[len(CHATS):]:
        routes[path] = {"GET": lambda: history(h, w, path[len(CHATS):])}
    methods = routes.get(path)
    if methods is None:  # not a path the emulator plays (the FastAPI-style body is assumed)
        return h.send_json(404, {"detail": "Not Found"})
    if h.command not in methods:
        return h.send_bytes(405, b'{"detail":"Method Not Allowed"}', "application/json",
                            {"Allow": ", ".join(methods)})
    methods[h.command]()


def _fault(h, w: WebState, session: str | None) -> dict | None:
    """Answers a queued immediate fault aimed at this request; a stream fault is returned for the stream."""
    f = w.take_fault(h.path, session)
    if f is None or f["kind"] in ("break", "stream_error", "hold"):
        return f
    kind = f["kind"]
    if kind == "rate_limited":
        send_envelope(h, "RateLimited", str(f.get("details") or auth.RATE_LIMITED), num=int(f.get("num", 3)))
    elif kind == "unauthorized":
        auth.unauthorized(h, str(f.get("shape") or "envelope"))
    elif kind == "punish":
        auth.punish(h, str(f.get("style") or w.switches["punish_style"]))
    elif kind == "in_progress":
        send_envelope(h, "Bad_Request", auth.IN_PROGRESS)
    else:
        send_envelope(h, "Bad_Request", str(f.get("details") or "Something wrong with request!"))
    return {"answered": True}


def new_chat(h, w: WebState, body: dict | None) -> None:
    """A cookie-only route (DIAG): the `token` cookie authenticates, a Bearer header is refused (assumed: DIAG
    says to strip it), and any token this server minted passes, even one the write endpoint then rejects
    (CNDOC §2.6: never a health check). No token cookie: 401, guest mode is gone (§1.14)."""
    jar = auth.cookies(h)
    s = w.session_of(jar.get("token", "")) if jar.get("token") else None
    if _fault(h, w, s["session"] if s else None):
        return
    if h.headers.get("Authorization") or not h.headers.get("version"):
        return send_envelope(h, "Bad_Request", auth.BAD_HEADER)
    if s is None:
        return h.send_json(401, auth.envelope("Unauthorized", auth.UNAUTHORIZED))
    models = (body or {}).get("models")
    if not isinstance(models, list) or not models or models[0] not in web_models.ids(w.switches):
        return send_envelope(h, "Bad_Request", "Model not found!")  # text assumed
    cid = str(uuid.uuid4())
    with w.lock:
        w.chats[cid] = {"session": s["session"], "title": str((body or {}).get("title") or "New Chat"),
                        "models": models, "chat_type": (body or {}).get("chat_type") or "t2t", "messages": [],
                        "last": None, "busy": None, "created_at": int(time.time())}
        w.stats["chats_created"] += 1
    h.send_json(200, {"success": True, "request_id": str(uuid.uuid4()),
                      "data": {"id": cid, "title": w.chats[cid]["title"], "models": models,
                               "chat_type": w.chats[cid]["chat_type"], "created_at": w.chats[cid]["created_at"]}})


def _problem(w: WebState, s: dict, query: dict, body: dict) -> tuple[str, str] | None:
    """What the completion body breaks (§1.6), as (code, details); the texts are assumed unless noted."""
    cid = body["chat_id"]
    chat = w.chats.get(cid)
    if query.get("chat_id", cid) != cid:
        return "Bad_Request", "chat_id in the query and the body differ"
    if chat is None or chat["session"] != s["session"]:
        return "Not_Found", auth.NOT_FOUND  # CNDOC §0: a made-up chat id
    if body.get("stream") is not True:
        return "Bad_Request", "stream must be true for text"  # Q2A: no stream=false for text
    if body.get("model") not in web_models.ids(w.switches):
        return "Not_Found", "Model not found!"
    msgs = body.get("messages")
    if not isinstance(msgs, list) or len(msgs) != 1 or not isinstance(msgs[0], dict) or \
            msgs[0].get("role") not in ("user", "function"):
        return "Bad_Request", "messages must hold exactly one node: the new user turn"
    return None


def _start(w: WebState, body: dict, s: dict) -> tuple[dict, dict] | tuple[str, str]:
    """Claims the chat for one generation (or says it is busy, or that the parent is wrong)."""
    chat = w.chats[body["chat_id"]]
    if chat["busy"]:
        w.stats["in_progress"] += 1
        return "Bad_Request", auth.IN_PROGRESS
    parent = body.get("parent_id", body.get("parentId")) or None
    if parent != chat["last"]:  # the chain: each turn's parent is the chat's last response (§1.8)
        return "Bad_Request", "The parent message is not the chat's last response!"  # text assumed
    node = body["messages"][0]
    rid, uid = str(uuid.uuid4()), str(uuid.uuid4())
    prompt = web_stream.prompt_of(node)
    for m in chat["messages"]:
        if m["id"] == parent:
            m["childrenIds"].append(uid)
    chat["messages"] += [{"id": uid, "role": node.get("role"), "content": prompt, "parentId": parent,
                          "childrenIds": [rid]},
                         {"id": rid, "role": "assistant", "content": "", "parentId": uid, "childrenIds": [],
                          "model": body["model"]}]
    chat["last"] = rid
    gen = {"response_id": rid, "parent_id": parent, "stopped": False}
    chat["busy"] = gen
    w.stats["completions"] += 1
    return chat, gen


def _count_tool_call(w: WebState) -> None:
    """`tool_call_times`: a client's round trip runs the tool and asks again; the model then answers."""
    left = int(w.switches.get("tool_call_times") or 0)
    if w.switches.get("tool_call") is not None and left > 0:
        w.switches["tool_call_times"] = left - 1
        if left == 1:
            w.switches["tool_call"] = None


def complete(h, w: WebState, query: dict, body: dict | None, raw: bytes = b"") -> None:
    s = auth.admit(h, w, raw=raw, body=body)
    if s is None:
        return
    fault = _fault(h, w, s["session"])
    if fault and fault.get("answered"):
        return
    if body is None or not body.get("chat_id"):
        return h.send_json(400, {"success": False, "data": {"code": "RequestValidationError",
                                                            "details": "Field 'chat_id': Field required"}})
    problem = _problem(w, s, query, body)
    if problem:
        return send_envelope(h, *problem)
    hours = w.over_daily_limit(s)
    if hours:
        return send_envelope(h, "RateLimited", auth.RATE_LIMITED, num=hours)
    with w.lock:
        started = _start(w, body, s)
        sw = dict(w.switches)
        if not isinstance(started[0], str):
            _count_tool_call(w)
        released = w.released
    if isinstance(started[0], str):
        return send_envelope(h, *started)
    chat, gen = started
    fc = body.get("feature_config") if isinstance(body.get("feature_config"), dict) else {}
    thinking = None
    if fc.get("thinking_enabled") is True and web_models.thinks(body["model"]):
        thinking = "detail" if fc.get("thinking_format") == "detail" else "summary"  # default assumed
    plan = web_stream.plan(body, web_stream.prompt_of(body["messages"][0]), thinking, sw)
    # response_index: the doc shows "0", a string
    created = {"chat_id": body["chat_id"], "parent_id": gen["parent_id"], "response_id": gen["response_id"],
               "response_index": "0"}
    try:
        _stream(h, w, chat, gen, web_stream.frames(plan, created), sw, fault, released, plan["incremental"])
    finally:
        with w.lock:
            chat["busy"] = None


def _stream(h, w: WebState, chat: dict, gen: dict, frames, sw: dict, fault: dict | None, released,
            incremental: bool) -> None:
    """Writes the frames, playing a stream fault: `break` (after `after` frames the stream ends, cleanly or with
    `how: reset`), `stream_error` (an in-stream error frame, §1.7), `hold` (a pause after response.created)."""
    kind = fault["kind"] if fault else None
    after = int(fault.get("after", 1)) if fault else 0
    # a stream that breaks off closes its connection: said up front, so that no client sends its next request on it
    h.start_stream({"x-accel-buffering": "no", **({"Connection": "close"} if kind == "break" else {})})
    answer = chat["messages"][-1]
    for i, frame in enumerate(frames):
        if gen["stopped"]:  # /api/v2/chat/stop: the end frame, then the end (assumed)
            h.write_event(b"data: " + auth.dumps({"choices": [{"delta": web_stream.end_delta()}],
                                                  "response_id": gen["response_id"]}) + b"\n\n", False)
            break
        if kind == "break" and i == after:
            if fault and fault.get("how") == "reset":
                return h.reset_connection()
            break
        if kind == "stream_error" and i == after:
            error = (fault or {}).get("error") or "Internal error!"
            h.write_event(b"data: " + auth.dumps({"error": error}) + b"\n\n", False)
            break
        if i and sw["gap_ms"]:
            h.server.stopping.wait(sw["gap_ms"] / 1000)
        h.write_event(b"data: " + auth.dumps(frame) + b"\n\n", False)
        delta = frame["choices"][0]["delta"] if frame.get("choices") else {}
        if delta.get("phase", "answer") == "answer" and delta.get("status") == "typing":
            with w.lock:  # the history keeps what was said
                answer["content"] = answer["content"] + delta["content"] if incremental else delta["content"]
        if i == 0 and kind == "hold":  # after response.created, until POST /_emulator/web/release or a stop
            while not (released.is_set() or gen["stopped"] or h.server.stopping.is_set()):
                released.wait(0.05)
    h.end_stream()
    h.close_connection = kind == "break"


def stop(h, w: WebState, body: dict | None) -> None:
    """Stops the chat's generation (the body `{chat_id, response_id}` is assumed: §1.4 says UNVERIFIED)."""
    s = auth.admit(h, w)
    if s is None:
        return
    chat = w.chats.get(str((body or {}).get("chat_id")))
    if chat is None or chat["session"] != s["session"]:
        return send_envelope(h, "Not_Found", auth.NOT_FOUND)
    with w.lock:
        if chat["busy"]:
            chat["busy"]["stopped"] = True
    h.send_json(200, {"success": True, "request_id": str(uuid.uuid4()), "data": {}})


def history(h, w: WebState, cid: str) -> None:
    """`GET /api/v2/chats/<id>`: the server-side message tree (QP's fetchQwenChatHistory)."""
    s = auth.admit(h, w, write=False)
    if s is None:
        return
    chat = w.chats.get(cid)
    if chat is None or chat["session"] != s["session"]:
        return send_envelope(h, "Not_Found", auth.NOT_FOUND)
    with w.lock:
        messages = [dict(m, childrenIds=list(m["childrenIds"])) for m in chat["messages"]]
    h.send_json(200, {"success": True, "data": {"id": cid, "title": chat["title"], "chat": {"messages": messages}}})


def refresh(h, w: WebState) -> None:
    """auth.qwen.ai's refresh (§1.2): the `refresh_token` cookie, the auth domain's `version` header; no WAF.
    Answers a new access token (the old one dies) in the shape the `refresh_shape` switch names, and a
    rotated refresh token as `Set-Cookie` (without `Domain=.qwen.ai` and `Secure`: this host is plain-HTTP
    loopback, not qwen.ai)."""
    with w.lock:
        w.stats["refresh_calls"] += 1
    if _fault(h, w, auth.session_id(h, w)):
        return
    if not h.headers.get("version"):
        return send_envelope(h, "Bad_Request", auth.BAD_HEADER)
    done = w.refresh(auth.cookies(h).get("refresh_token", ""))
    if done is None:
        return auth.unauthorized(h)
    s, rt = done
    shape = w.switches["refresh_shape"]
    if shape == "token":
        data: dict = {"token": s["access"]}
    elif shape == "expires":
        data = {"access_token": s["access"], "expires_at": s["expires_at"]}
    else:
        data = {"access_token": s["access"], "refresh_token": rt}
    headers = {}
    if w.switches["rotate_refresh_token"]:
        headers["Set-Cookie"] = f"refresh_token={rt}; Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax"
    h.send_json(200, {"success": True, "data": data}, headers)
