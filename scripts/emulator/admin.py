"""The test hooks under /_emulator/ and the browser page that approves a device login."""

from __future__ import annotations

import html

from . import batches, faults, tools, web_admin, web_state

SETTLE = {"approve": "approved", "deny": "denied", "expire": "expired"}
VLLM_FIELDS = ("reasoning_content", "reasoning", "both")

AUTHORIZE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Qwen emulator: authorize</title></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 3em auto">
<h1>Qwen emulator</h1>
<p>A device asks to sign in with user code <b>{code}</b>.</p>
<form method="post" action="/_emulator/approve">
<input type="hidden" name="user_code" value="{code}">
<button type="submit">Approve</button>
<button type="submit" formaction="/_emulator/deny">Deny</button>
</form>
</body></html>
"""

SETTLED_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Qwen emulator</title></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 3em auto">
<h1>{what}</h1><p>You can close this page and return to your terminal.</p></body></html>
"""


def authorize_page(user_code: str) -> str:
    return AUTHORIZE_PAGE.format(code=html.escape(user_code, quote=True))


def _positive(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _bad_model_switch(body: dict) -> str | None:
    """What is wrong with the model switches given (extra_models, model_caps, reasoning_tokens), or None."""
    caps, extra = body.get("model_caps", {}), body.get("extra_models", [])
    if not isinstance(caps, dict) or not all(_positive(n) for n in caps.values()):
        return "model_caps must map model ids to positive integers"
    if not isinstance(extra, list) or not all(isinstance(m, str) for m in extra):
        return "extra_models must be a list of model ids"
    if body.get("reasoning_tokens") is not None and not _positive(body["reasoning_tokens"]):
        return "reasoning_tokens must be a positive integer or null"
    return None


def handle(h, name: str, body: dict, from_browser: bool) -> None:
    st = h.state
    method = h.command
    with st.lock:
        if name.startswith("web/"):  # the Qwen Chat web API's hooks (web_admin.py)
            return web_admin.handle(h, name[len("web/"):], body)
        if name == "switches" and method in ("GET", "POST"):
            if method == "POST":
                unknown = sorted(set(body) - set(st.switches))
                if unknown:
                    return h.send_json(400, {"error": f"unknown switches {unknown}", "known": sorted(st.switches)})
                if body.get("tool_calls", "asked") not in tools.MODES:
                    return h.send_json(400, {"error": f"tool_calls must be one of {', '.join(tools.MODES)}"})
                if body.get("vllm_reasoning_field", "reasoning_content") not in VLLM_FIELDS:
                    return h.send_json(400, {"error": f"vllm_reasoning_field must be one of {', '.join(VLLM_FIELDS)}"})
                bad = _bad_model_switch(body)
                if bad:
                    return h.send_json(400, {"error": bad})
                st.switches.update(body)
            return h.send_json(200, st.switches)
        if name == "reset" and method == "POST":
            st.reset(tokens=bool(body.get("tokens")))
            web_state.of(st).reset(sessions=bool(body.get("tokens")))
            return h.send_json(200, {"ok": True})
        if name == "requests" and method in ("GET", "DELETE"):
            if method == "DELETE":
                st.requests.clear()
                return h.send_json(200, {"ok": True})
            return h.send_json(200, list(st.requests))
        if name == "cache" and method in ("GET", "POST"):  # the prompt cache: live entries; its clock moved on
            seconds = body.get("advance", 0)
            if not isinstance(seconds, (int, float)) or seconds < 0:
                return h.send_json(400, {"error": "advance must be a number of seconds ≥ 0"})
            st.cache.advance(seconds)
            return h.send_json(200, st.cache.counts())
        if name == "batches" and method in ("GET", "POST"):  # batches moved on demand, never on the wall clock
            return batches.admin(h, body)
        if name in ("engine", "speed") and method in ("GET", "POST"):  # the vLLM/SGLang engine (engine.py)
            said = st.engine.admin(body if method == "POST" else {})
            return h.send_json(400 if isinstance(said, str) else 200, {"error": said} if isinstance(said, str)
                               else said)
        if name == "stats" and method == "GET":
            return h.send_json(200, st.stats)
        if name == "fault" and method == "POST":
            fault = faults.normalise(body)
            if isinstance(fault, str):
                return h.send_json(400, {"error": fault})
            st.faults.append(fault)
            return h.send_json(200, {"ok": True, "queued": len(st.faults)})
        if name == "faults" and method == "GET":
            return h.send_json(200, st.faults)
        if name == "tokens" and method == "POST":
            kind = body.get("kind", "oauth")
            if kind not in ("oauth", "key"):
                return h.send_json(400, {"error": "kind must be 'oauth' or 'key'"})
            expires_in = body.get("expires_in", 3600)
            if not isinstance(expires_in, (int, float)):
                return h.send_json(400, {"error": "expires_in must be a number of seconds"})
            return h.send_json(200, st.issue(kind, expires_in, body.get("access_token"), body.get("refresh_token")))
        if name in SETTLE and method == "POST":
            for code, dev in st.devices.items():
                if code == body.get("device_code") or (body.get("user_code") or "").upper() == dev["user_code"]:
                    dev["status"] = SETTLE[name]
                    if from_browser:
                        return h.send_text(200, SETTLED_PAGE.format(what=SETTLE[name].capitalize()), "text/html")
                    return h.send_json(200, {"ok": True, "status": SETTLE[name]})
            return h.send_json(404, {"error": "no such device authorisation"})
    h.send_json(404, {"error": f"unknown admin call {method} /_emulator/{name}"})
