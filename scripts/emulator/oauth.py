"""Qwen's OAuth endpoints: RFC 8628 device authorisation with PKCE, device grant, refresh grant."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time

from . import faults

CLIENT_ID = "f0304373b74a44d2b584a3fb70ca9e56"
REQUIRED_SCOPE = "model.completion"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
USER_CODE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
INVALID_REFRESH = {"error": "invalid_request", "error_description": "Invalid refresh token or client_id"}


def _err(error: str, description: str) -> dict:
    return {"error": error, "error_description": description}


def challenge_of(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _fault_answered(h) -> bool:
    """Applies a queued OAuth fault; True when it answered (or killed) the request."""
    fault = h.state.take_fault(faults.OAUTH_FAULTS, None, h.path)
    if not fault:
        return False
    kind = fault["kind"]
    if kind == "oauth_slow":
        h.server.stopping.wait(float(fault.get("seconds", 5)))
        return False
    if kind == "oauth_reset":
        h.reset_connection()
    else:
        status = 500 if kind == "oauth500" else 503
        h.send_json(status, _err("server_error", f"Internal error ({status})"))
    return True


def _resource_url(h, reply: dict) -> dict:
    url = h.state.snapshot()["resource_url"]
    if url != "none":
        reply["resource_url"] = url or h.state.url
    return reply


def device_code(h, form: dict) -> None:
    h.state.bump("device_code_calls")
    if _fault_answered(h):
        return
    if form.get("client_id") != CLIENT_ID:
        return h.send_json(400, _err("invalid_client", "Client authentication failed: unknown client_id"))
    if REQUIRED_SCOPE not in form.get("scope", "").split():
        return h.send_json(400, _err("invalid_scope", f"The requested scope must include {REQUIRED_SCOPE}"))
    if form.get("code_challenge_method") != "S256" or not form.get("code_challenge"):
        return h.send_json(400, _err("invalid_request", "PKCE with code_challenge_method=S256 is required"))
    st = h.state
    with st.lock:
        sw = st.switches
        device = secrets.token_urlsafe(32)
        user_code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8))
        st.devices[device] = {"user_code": user_code, "challenge": form["code_challenge"],
                              "status": "approved" if sw["auto_approve"] else "pending",
                              "expires_at": time.time() + sw["device_expires_in"]}
        reply = {"device_code": device, "user_code": user_code, "verification_uri": f"{st.url}/authorize",
                 "verification_uri_complete": f"{st.url}/authorize?user_code={user_code}&client=qwen-code",
                 "expires_in": sw["device_expires_in"]}
        if sw["interval"] is not None:
            reply["interval"] = sw["interval"]
    h.send_json(200, reply)


def token(h, form: dict) -> None:
    grant = form.get("grant_type")
    h.state.bump("token_calls", *(("refresh_calls",) if grant == "refresh_token" else ()))
    if _fault_answered(h):
        return
    if grant == "refresh_token":
        return _refresh(h, form)
    if grant != DEVICE_GRANT:
        return h.send_json(400, _err("unsupported_grant_type", f"Unsupported grant_type {grant!r}"))
    if form.get("client_id") != CLIENT_ID:
        return h.send_json(400, _err("invalid_client", "Client authentication failed: unknown client_id"))
    st = h.state
    with st.lock:
        sw = st.switches
        dev = st.devices.get(form.get("device_code", ""))
        if dev is None:
            return h.send_json(401, _err("invalid_grant", "Device code expired or invalid"))
        if sw["slow_down"] > 0:
            sw["slow_down"] -= 1
            return h.send_json(sw["slow_down_status"], _err("slow_down", "Polling too frequently, slow down"))
        if dev["status"] == "pending" and time.time() > dev["expires_at"]:
            dev["status"] = "expired"
        if dev["status"] == "pending":
            return h.send_json(400, _err("authorization_pending", "The authorization request is still pending"))
        if dev["status"] == "denied":
            return h.send_json(400, _err("access_denied", "The user denied the authorization request"))
        if dev["status"] == "expired":
            return h.send_json(400, _err("expired_token", "The device code has expired"))
        if challenge_of(form.get("code_verifier", "")) != dev["challenge"]:
            return h.send_json(400, _err("invalid_grant", "PKCE verification failed: code_verifier does not match"))
        del st.devices[form["device_code"]]
        issued = st.issue("oauth")
    reply = {"access_token": issued["access_token"], "refresh_token": issued["refresh_token"],
             "token_type": "Bearer", "expires_in": issued["expires_in"]}
    h.send_json(200, _resource_url(h, reply))


def _refresh(h, form: dict) -> None:
    st = h.state
    delay = st.snapshot()["refresh_delay_ms"]
    if delay:
        h.server.stopping.wait(delay / 1000)
    with st.lock:
        sw = st.switches
        rt = form.get("refresh_token", "")
        if form.get("client_id") != CLIENT_ID or rt not in st.refresh_tokens:
            return h.send_json(sw["refresh_fail_status"], INVALID_REFRESH)
        rotate = sw["rotate_refresh_token"]
        if rotate:
            del st.refresh_tokens[rt]
        issued = st.issue("oauth", refresh_token=None if rotate else rt)
        omit_resource = sw["refresh_omit_resource_url"]
    reply = {"access_token": issued["access_token"], "token_type": "Bearer", "expires_in": issued["expires_in"]}
    if rotate:
        reply["refresh_token"] = issued["refresh_token"]
    h.send_json(200, reply if omit_resource else _resource_url(h, reply))
