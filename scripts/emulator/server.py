"""The emulator's HTTP server: Qwen OAuth, the chat API, faults and the admin API."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import socket
import struct
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from . import chat
from .state import State

CLIENT_ID = "f0304373b74a44d2b584a3fb70ca9e56"
AUTH_401 = {"error": {"code": "invalid_api_key", "message": "invalid access token or token expired",
                      "param": None, "type": "invalid_request_error"}}
QUOTA = {"error": {"code": "insufficient_quota", "message": "Free allocated quota exceeded.", "param": None,
                   "type": "insufficient_quota"}}
QUOTA_BILLING = {"error": {"code": "insufficient_quota", "message": "You exceeded your current quota, please check "
                           "your plan and billing details. For details, see: https://help.aliyun.com/zh/model-studio/"
                           "error-code#token-limit", "param": None, "type": "insufficient_quota"}}
THROTTLE = {"error": {"code": "Throttling", "message": "Requests throttling triggered.", "param": None,
                      "type": "throttling"}}
CONTEXT = {"error": {"code": "invalid_parameter_error", "message": "Range of input length should be [1, 983616]",
                     "param": None, "type": "invalid_request_error"}}
CHAT_FAULTS = ("auth401", "quota429", "quota429_billing", "quota403", "throttle429", "context400", "timeout504",
               "midstream504", "server500", "server500_empty", "server503", "reset_before_headers",
               "reset_midstream", "stall", "invalid_json", "invalid_sse")
OAUTH_FAULTS = ("oauth500", "oauth_reset", "oauth_slow")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "EmulatorServer"

    def log_message(self, fmt, *args):  # quiet unless asked
        if not self.server.quiet:
            super().log_message(fmt, *args)

    # ---- plumbing ----------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self.server.state

    def _body(self) -> bytes:
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, body: bytes | dict | str, ctype: str = "application/json", headers=None) -> None:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _reset(self) -> None:
        """Close with RST (SO_LINGER 0): what a crashed upstream looks like."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("cache-control", "no-cache")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        if self.state.switches["split_writes"] and len(data) > 3:
            cuts = sorted({1, len(data) // 3, len(data) // 2, len(data) - 2})
            parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)]) if data[a:b]]
        else:
            parts = [data]
        for part in parts:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.flush()
            if len(parts) > 1:
                time.sleep(0.002)

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _record(self, body: bytes) -> object:
        parsed: object = None
        ctype = self.headers.get("content-type", "")
        try:
            if "json" in ctype:
                parsed = json.loads(body)
            elif "form" in ctype:
                parsed = dict(parse_qsl(body.decode()))
        except (ValueError, UnicodeDecodeError):
            parsed = None
        with self.state.lock:
            self.state.requests.append({"method": self.command, "path": self.path,
                                        "headers": {k.lower(): v for k, v in self.headers.items()},
                                        "body": parsed, "raw_body_len": len(body), "time": time.time()})
        return parsed

    # ---- routing ------------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/_emulator/"):
            return self._admin(path, b"")
        if path == "/authorize":
            code = dict(parse_qsl(urlsplit(self.path).query)).get("user_code", "")
            return self._send(200, f"<html><body><h1>Qwen emulator</h1><p>Code {code}</p><form method=post "
                                   f"action='/_emulator/approve?user_code={code}'><button>Approve</button></form>"
                                   "</body></html>", "text/html")
        self._record(b"")
        if path.endswith("/v1/models"):
            if not self._authorised():
                return self._send(401, {**AUTH_401, "request_id": str(uuid.uuid4())})
            return self._send(200, {"object": "list", "data": [{"id": m, "object": "model", "created": 0,
                                                                 "owned_by": "qwen"} for m in chat.KNOWN_MODELS]})
        self._send(404, {"error": {"message": "not found", "type": "invalid_request_error", "code": None,
                                   "param": None}})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = self._body()
        if path.startswith("/_emulator/"):
            return self._admin(path, body)
        parsed = self._record(body)
        if path == "/api/v1/oauth2/device/code":
            return self._device_code(parsed)
        if path == "/api/v1/oauth2/token":
            return self._token(parsed)
        if path.endswith("/chat/completions"):
            return self._chat(body)
        if path.endswith("/embeddings"):
            return self._embeddings(parsed)
        self._send(404, {"error": {"message": "not found", "type": "invalid_request_error", "code": None,
                                   "param": None}})

    # ---- API -------------------------------------------------------------------------------------

    def _bearer(self) -> str:
        auth = self.headers.get("authorization", "")
        return auth[7:] if auth.lower().startswith("bearer ") else ""

    def _authorised(self) -> bool:
        return self.state.valid(self._bearer())

    def _fault_response(self, fault: dict) -> bool:
        """Answer with a queued fault; True if the request is answered (or killed)."""
        kind = fault["kind"]
        rid = {"request_id": str(uuid.uuid4())}
        bodies = {"auth401": (401, {**AUTH_401, **rid}), "quota429": (429, {**QUOTA, **rid}),
                  "quota429_billing": (429, {**QUOTA_BILLING, **rid}), "quota403": (403, {**QUOTA, **rid}),
                  "context400": (400, {**CONTEXT, **rid}),
                  "server500": (500, {"error": {"code": "InternalError", "message": "Internal server error",
                                                "param": None, "type": "server_error"}, **rid}),
                  "server503": (503, {"error": {"code": "ServiceUnavailable", "message": "Service unavailable",
                                                "param": None, "type": "server_error"}, **rid})}
        if kind in bodies:
            self._send(*bodies[kind])
        elif kind == "throttle429":
            extra = {"retry-after": str(fault["retry_after"])} if fault.get("retry_after") is not None else {}
            self._send(429, {**THROTTLE, **rid}, headers=extra)
        elif kind == "timeout504":
            self._send(504, "stream timeout", "text/plain")
        elif kind == "server500_empty":
            self._send(500, b"", "text/plain")
        elif kind == "invalid_json":
            self._send(200, "{not json")
        elif kind == "reset_before_headers":
            self._reset()
        else:
            return False  # stream faults are handled while streaming
        return True

    def _chat(self, raw: bytes) -> None:
        token = self._bearer()
        if not self.state.valid(token):
            return self._send(401, {**AUTH_401, "request_id": str(uuid.uuid4())})
        with self.state.lock:
            self.state.stats["chat_requests"] += 1
        fault = self.state.take_fault(CHAT_FAULTS, token, self.path)
        if fault and self._fault_response(fault):
            return
        try:
            body = json.loads(raw)
        except ValueError:
            return self._send(400, {"error": {"code": "invalid_parameter_error", "message": "Request body is "
                                              "not valid JSON.", "param": None, "type": "invalid_request_error"}})
        problem = chat.validate(body)
        if problem:
            return self._send(*problem)
        limited = self.state.count(token)
        if limited == "throttle":
            return self._send(429, THROTTLE)
        if limited == "quota":
            return self._send(429, QUOTA)
        sw = dict(self.state.switches)
        plan = chat.plan(body, sw)
        if not body.get("stream"):
            return self._send(200, chat.completion(body, plan))
        self._stream(body, plan, sw, fault)

    def _stream(self, body: dict, plan: dict, sw: dict, fault: dict | None) -> None:
        kind = fault["kind"] if fault else None
        if sw["first_byte_delay_ms"]:
            time.sleep(sw["first_byte_delay_ms"] / 1000)
        self._start_stream()
        chunks = chat.stream_chunks(body, plan, sw)
        for i, c in enumerate(chunks):
            if i and sw["gap_ms"]:
                time.sleep(sw["gap_ms"] / 1000)
            if kind in ("midstream504", "reset_midstream", "stall") and i == 3:
                if kind == "midstream504":
                    self._chunk(b'data: {"error":{"message":"stream timeout","type":"server_error","code":"504"}}'
                                b"\n\n")
                    self._end_stream()
                elif kind == "reset_midstream":
                    self._reset()
                else:
                    self._stall(sw["stall_seconds"])
                return
            if kind == "invalid_sse" and i == 2:
                self._chunk(b"data: {this is not json\n\n")
            self._chunk(f"data: {json.dumps(c)}\n\n".encode())
        self._chunk(b"data: [DONE]\n\n")
        self._end_stream()

    def _stall(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.server.stopping.is_set():
            time.sleep(0.05)
        self._reset()

    def _embeddings(self, body) -> None:
        token = self._bearer()
        if not self.state.valid(token):
            return self._send(401, {**AUTH_401, "request_id": str(uuid.uuid4())})
        with self.state.lock:
            self.state.stats["embedding_requests"] += 1
        fault = self.state.take_fault(CHAT_FAULTS, token, self.path)
        if fault and self._fault_response(fault):
            return
        if not isinstance(body, dict) or body.get("model") != "text-embedding-v4":
            return self._send(400, {"error": {"code": "model_not_found", "message": "Model not exist.",
                                              "param": None, "type": "invalid_request_error"}})
        self._send(200, chat.embeddings(body))

    # ---- OAuth -----------------------------------------------------------------------------------

    def _oauth_fault(self) -> bool:
        fault = self.state.take_fault(OAUTH_FAULTS, None, self.path)
        if not fault:
            return False
        if fault["kind"] == "oauth_slow":
            time.sleep(fault.get("seconds", 5))
            return False
        if fault["kind"] == "oauth500":
            self._send(500, {"error": "server_error", "error_description": "Internal error"})
        else:
            self._reset()
        return True

    def _device_code(self, form) -> None:
        with self.state.lock:
            self.state.stats["device_code_calls"] += 1
        if self._oauth_fault():
            return
        form = form or {}
        if form.get("client_id") != CLIENT_ID:
            return self._send(400, {"error": "invalid_client", "error_description": "Unknown client_id"})
        if form.get("code_challenge_method") != "S256" or not form.get("code_challenge"):
            return self._send(400, {"error": "invalid_request", "error_description": "PKCE S256 required"})
        device_code = secrets.token_urlsafe(24)
        user_code = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(8))
        sw = self.state.switches
        with self.state.lock:
            self.state.devices[device_code] = {"user_code": user_code, "challenge": form["code_challenge"],
                                               "status": "approved" if sw["auto_approve"] else "pending",
                                               "expires_at": time.time() + sw["device_expires_in"]}
        reply = {"device_code": device_code, "user_code": user_code,
                 "verification_uri": f"{self.state.url}/authorize",
                 "verification_uri_complete": f"{self.state.url}/authorize?user_code={user_code}&client=qwen-code",
                 "expires_in": sw["device_expires_in"]}
        if sw["interval"] is not None:
            reply["interval"] = sw["interval"]
        self._send(200, reply)

    def _token(self, form) -> None:
        form = form or {}
        grant = form.get("grant_type")
        with self.state.lock:
            self.state.stats["token_calls"] += 1
            if grant == "refresh_token":
                self.state.stats["refresh_calls"] += 1
        if self._oauth_fault():
            return
        if form.get("client_id") != CLIENT_ID:
            return self._send(400, {"error": "invalid_request", "error_description": "Invalid refresh token or "
                                                                                      "client_id"})
        if grant == "refresh_token":
            return self._refresh(form)
        if grant != "urn:ietf:params:oauth:grant-type:device_code":
            return self._send(400, {"error": "unsupported_grant_type"})
        sw = self.state.switches
        with self.state.lock:
            dev = self.state.devices.get(form.get("device_code", ""))
            if dev is None:
                return self._send(401, {"error": "invalid_grant", "error_description": "Unknown device code"})
            if sw["slow_down"] > 0:
                sw["slow_down"] -= 1
                return self._send(sw["slow_down_status"], {"error": "slow_down",
                                                          "error_description": "Polling too fast"})
            if dev["status"] == "pending" and time.time() > dev["expires_at"]:
                dev["status"] = "expired"
            if dev["status"] == "pending":
                return self._send(400, {"error": "authorization_pending",
                                        "error_description": "The authorization request is still pending"})
            if dev["status"] == "denied":
                return self._send(400, {"error": "access_denied", "error_description": "The user denied access"})
            if dev["status"] == "expired":
                return self._send(400, {"error": "expired_token", "error_description": "The device code expired"})
            verifier = form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if digest != dev["challenge"]:
                return self._send(400, {"error": "invalid_grant", "error_description": "PKCE verification failed"})
            del self.state.devices[form["device_code"]]
            issued = self.state.issue("oauth")
        reply = {"access_token": issued["access_token"], "refresh_token": issued["refresh_token"],
                 "token_type": "Bearer", "expires_in": issued["expires_in"], "scope": "openid profile email "
                 "model.completion"}
        self._add_resource_url(reply)
        self._send(200, reply)

    def _refresh(self, form: dict) -> None:
        sw = self.state.switches
        if sw["refresh_delay_ms"]:
            time.sleep(sw["refresh_delay_ms"] / 1000)
        with self.state.lock:
            rt = form.get("refresh_token", "")
            old = self.state.refresh_tokens.get(rt)
            if old is None:
                return self._send(sw["refresh_fail_status"], {"error": "invalid_request", "error_description":
                                                              "Invalid refresh token or client_id"})
            keep_rt = not sw["rotate_refresh_token"]
            if not keep_rt:
                del self.state.refresh_tokens[rt]
            issued = self.state.issue("oauth", refresh_token=rt if keep_rt else None)
        reply = {"access_token": issued["access_token"], "token_type": "Bearer", "expires_in": issued["expires_in"]}
        if not keep_rt:
            reply["refresh_token"] = issued["refresh_token"]
        if not sw["refresh_omit_resource_url"]:
            self._add_resource_url(reply)
        self._send(200, reply)

    def _add_resource_url(self, reply: dict) -> None:
        url = self.state.switches["resource_url"]
        if url != "none":
            reply["resource_url"] = url or self.state.url

    # ---- admin -----------------------------------------------------------------------------------

    def _admin(self, path: str, raw: bytes) -> None:
        st = self.state
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            body = dict(parse_qsl(raw.decode(errors="replace")))
        body.update(dict(parse_qsl(urlsplit(self.path).query)))
        name = path[len("/_emulator/"):]
        with st.lock:
            if name == "switches":
                if self.command == "POST":
                    unknown = set(body) - set(st.switches)
                    if unknown:
                        return self._send(400, {"error": f"unknown switches: {sorted(unknown)}"})
                    st.switches.update(body)
                return self._send(200, st.switches)
            if name == "reset":
                st.reset(tokens=bool(body.get("tokens")))
                return self._send(200, {"ok": True})
            if name == "requests":
                if self.command == "DELETE":
                    st.requests.clear()
                return self._send(200, st.requests if self.command == "GET" else {"ok": True})
            if name == "stats":
                return self._send(200, st.stats)
            if name == "fault":
                if body.get("kind") not in CHAT_FAULTS + OAUTH_FAULTS:
                    return self._send(400, {"error": f"unknown fault {body.get('kind')!r}"})
                st.faults.append({"count": 1, **body})
                return self._send(200, {"ok": True})
            if name == "tokens":
                issued = st.issue(body.get("kind", "oauth"), body.get("expires_in"), body.get("access_token"),
                                  body.get("refresh_token"))
                return self._send(200, issued)
            if name in ("approve", "deny", "expire"):
                status = {"approve": "approved", "deny": "denied", "expire": "expired"}[name]
                for code, dev in st.devices.items():
                    if code == body.get("device_code") or dev["user_code"] == body.get("user_code"):
                        dev["status"] = status
                        return self._send(200, {"ok": True})
                return self._send(404, {"error": "no such device authorisation"})
        self._send(404, {"error": "unknown admin path"})

    do_DELETE = do_GET

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, state: State, quiet: bool) -> None:
        super().__init__(addr, Handler)
        self.state = state
        self.quiet = quiet
        self.stopping = threading.Event()
