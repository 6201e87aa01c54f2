"""The web API's test hooks, `/_emulator/web/…`: mint, expire, revoke and punish browser sessions; switches;
queued faults; release a held generation; a look at the state."""

from __future__ import annotations

import threading
import time

from .web_state import DEFAULT_SWITCHES, WebState, of


def _import_formats(minted: dict) -> dict:
    """The forms a user pastes a browser session in: a Cookie header, a Netscape cookies.txt, a Playwright
    storageState (all on `.qwen.ai`, as the browser keeps them)."""
    jar = minted["cookies"]
    expires = int(time.time()) + 30 * 86400
    lines = ["# Netscape HTTP Cookie File"] + [
        "\t".join((".qwen.ai", "TRUE", "/", "TRUE", str(expires), k, v)) for k, v in jar.items()]
    state = {"cookies": [{"name": k, "value": v, "domain": ".qwen.ai", "path": "/", "expires": expires,
                          "httpOnly": k in ("refresh_token", "token"), "secure": True, "sameSite": "Lax"}
                         for k, v in jar.items()],
             "origins": [{"origin": "https://chat.qwen.ai", "localStorage": [{"name": "token",
                                                                              "value": minted["access_token"]}]}]}
    return {**minted, "cookie_header": "; ".join(f"{k}={v}" for k, v in jar.items()),
            "cookies_txt": "\n".join(lines) + "\n", "storage_state": state}


def _session(h, w: WebState, body: dict) -> dict | None:
    s = w.sessions.get(str(body.get("session")))
    if s is None:
        h.send_json(404, {"error": f"no web session {body.get('session')!r}", "known": sorted(w.sessions)})
    return s


def _view(w: WebState) -> dict:
    now = time.time()
    sessions = [{"session": s["session"], "state": s["state"], "expires_in": int(s["expires_at"] - now),
                 "punished_for": max(0, int(s["punished_until"] - now))} for s in w.sessions.values()]
    chats = {cid: {"session": c["session"], "busy": bool(c["busy"]), "last_response_id": c["last"],
                   "messages": len(c["messages"])} for cid, c in w.chats.items()}
    return {"sessions": sessions, "chats": chats, "stats": dict(w.stats)}


def handle(h, name: str, body: dict) -> None:
    """`name` is the part after /_emulator/web/. Called with the state's lock held."""
    w = of(h.state)
    method = h.command
    if name == "session" and method == "POST":
        expires_in = body.get("expires_in", w.switches["access_ttl"])
        extra = body.get("cookies") or {}
        if not isinstance(expires_in, (int, float)) or not isinstance(extra, dict):
            return h.send_json(400, {"error": "expires_in must be seconds, cookies an object"})
        return h.send_json(200, _import_formats(w.mint(expires_in, {str(k): str(v) for k, v in extra.items()})))
    if name in ("revoke", "punish", "unpunish", "expire") and method == "POST":
        s = _session(h, w, body)
        if s is None:
            return None
        if name == "revoke":
            s["state"] = "revoked"
        elif name == "punish":  # until unpunished, or for `seconds`
            if body.get("seconds") is not None:
                w.punish(s, float(body["seconds"]))
            else:
                s["state"] = "punished"
        elif name == "unpunish":
            s["state"], s["punished_until"] = "ok", 0.0
        else:
            s["expires_at"] = int(time.time()) - 1
        return h.send_json(200, {"ok": True, "session": s["session"]})
    if name == "switches" and method in ("GET", "POST"):
        if method == "POST":
            unknown = sorted(set(body) - set(DEFAULT_SWITCHES))
            if unknown:
                return h.send_json(400, {"error": f"unknown web switches {unknown}", "known": sorted(DEFAULT_SWITCHES)})
            w.switches.update(body)
        return h.send_json(200, w.switches)
    if name == "fault" and method == "POST":
        problem = w.queue_fault(body)
        if problem:
            return h.send_json(400, {"error": problem})
        return h.send_json(200, {"ok": True, "queued": len(w.faults)})
    if name == "faults" and method == "GET":
        return h.send_json(200, w.faults)
    if name == "release" and method == "POST":  # held generations go on
        held, w.released = w.released, threading.Event()
        held.set()
        return h.send_json(200, {"ok": True})
    if name == "state" and method == "GET":
        return h.send_json(200, _view(w))
    h.send_json(404, {"error": f"unknown admin call {method} /_emulator/web/{name}"})
