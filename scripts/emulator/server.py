"""The HTTP server: routing, the chat API's wire behaviour (JSON, SSE, faults) and socket plumbing."""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from urllib.parse import parse_qsl, urlsplit

from . import admin, chat, faults, oauth
from .faults import dumps
from .state import State

API_PREFIXES = ("/v1", "/compatible-mode/v1")
NOT_FOUND = {"error": {"code": "NotFound", "message": "Not found", "param": None, "type": "invalid_request_error"}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "QwenEmulator/1.0"
    sys_version = ""
    server: "EmulatorServer"

    # ---- socket plumbing -------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        # Without it small writes wait for the peer's delayed ACK: a fake ~40 ms stall in benchmarks.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, fmt, *args) -> None:
        if not self.server.quiet:
            super().log_message(fmt, *args)

    @property
    def state(self) -> State:
        return self.server.state

    def send_bytes(self, status: int, body: bytes, ctype: str | None, headers: dict | None = None) -> None:
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, body, headers: dict | None = None) -> None:
        self.send_bytes(status, dumps(body), "application/json", headers)

    def send_text(self, status: int, text: str, ctype: str = "text/plain; charset=utf-8") -> None:
        self.send_bytes(status, text.encode(), ctype)

    def reset_connection(self) -> None:
        """Close with RST (SO_LINGER 0), as a crashed upstream does."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def write_event(self, data: bytes, split: bool) -> None:
        """One SSE event as HTTP chunk(s); split: several writes cut at arbitrary byte positions."""
        parts = [data]
        if split and len(data) > 4:
            rnd = random.Random(len(data))
            cuts = sorted({1, rnd.randrange(2, len(data) - 1), len(data) - 1})
            parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
        for part in parts:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            if split:
                time.sleep(0.001)  # separate TCP segments, not one coalesced write

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    # ---- requests --------------------------------------------------------------------------------

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                out += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers
                pass
            return bytes(out)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def parse_body(self, raw: bytes):
        """A form as a dict, JSON as parsed, else None."""
        try:
            if "x-www-form-urlencoded" in self.headers.get("Content-Type", ""):
                return dict(parse_qsl(raw.decode(), keep_blank_values=True))
            return json.loads(raw) if raw.strip() else None
        except (ValueError, UnicodeDecodeError):
            return None

    def record(self, raw: bytes, parsed) -> None:
        headers: dict[str, str] = {}
        for k, v in self.headers.items():
            k = k.lower()
            headers[k] = f"{headers[k]}, {v}" if k in headers else v
        self.state.log({"method": self.command, "path": self.path, "headers": headers, "body": parsed,
                        "raw_body_len": len(raw), "time": time.time()})

    def bearer(self) -> str:
        auth = self.headers.get("Authorization", "")
        return auth[7:].strip() if auth[:7].lower() == "bearer " else ""

    def do_GET(self) -> None:
        self.dispatch()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_GET

    def dispatch(self) -> None:
        try:
            self.route()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True  # the client went away mid-answer

    def route(self) -> None:
        url = urlsplit(self.path)
        path, query = url.path, dict(parse_qsl(url.query))
        raw = self.read_body()
        parsed = self.parse_body(raw)
        if path.startswith("/_emulator/"):
            body = parsed if isinstance(parsed, dict) else {}
            browser = "x-www-form-urlencoded" in self.headers.get("Content-Type", "")
            return admin.handle(self, path[len("/_emulator/"):], {**body, **query}, browser)
        self.record(raw, parsed)
        form = parsed if isinstance(parsed, dict) else {}
        api = next((path[len(p):] for p in API_PREFIXES if path.startswith(p + "/")), None)
        routes = {
            "/api/v1/oauth2/device/code": {"POST": lambda: oauth.device_code(self, form)},
            "/api/v1/oauth2/token": {"POST": lambda: oauth.token(self, form)},
            "/api/v1/indices/plugin/web_search": {"POST": lambda: self.api(lambda _: (200, chat.web_search(parsed)))},
            "/authorize": {"GET": lambda: self.send_text(200, admin.authorize_page(query.get("user_code", "")),
                                                         "text/html; charset=utf-8")},
        }
        if api == "/chat/completions":
            routes[path] = {"POST": lambda: self.chat(raw)}
        elif api == "/embeddings":
            routes[path] = {"POST": lambda: self.api(lambda _: chat.embeddings(parsed), "embedding_requests")}
        elif api == "/models" or (api or "").startswith("/models/"):
            routes[path] = {"GET": lambda: self.api(lambda _: self.models(api[len("/models/"):]), metered=False)}
        methods = routes.get(path)
        if methods is None:
            return self.send_json(404, NOT_FOUND)
        if self.command not in methods:
            return self.send_bytes(405, b"", None, {"Allow": ", ".join(methods)})
        methods[self.command]()

    # ---- the API ---------------------------------------------------------------------------------

    def authorised(self) -> str | None:
        token = self.bearer()
        if self.state.valid(token):
            return token
        self.send_json(401, faults.auth_401())
        return None

    def api(self, answer, counter: str | None = None, metered: bool = True) -> None:
        """A JSON endpoint: auth, then (if metered) queued faults and rate limits, then answer(token)."""
        token = self.authorised()
        if token is None:
            return
        if counter:
            self.state.bump(counter)
        f = self.state.take_fault(faults.API_FAULTS, token, self.path) if metered else None
        if f and self.fault_answered(f, stream=False):
            return
        if metered and not self.within_limits(token):
            return
        status, body = answer(token)
        data = dumps(body)
        if f and self.fault_answered(f, False, data):
            return
        self.send_bytes(status, data, "application/json")

    def models(self, model_id: str) -> tuple[int, dict]:
        entry = lambda m: {"id": m, "object": "model", "created": 0, "owned_by": "qwen"}  # noqa: E731
        if not model_id:
            return 200, {"object": "list", "data": [entry(m) for m in chat.KNOWN_MODELS]}
        if model_id in chat.KNOWN_MODELS:
            return 200, entry(model_id)
        return 404, chat.error("model_not_found", f"The model `{model_id}` does not exist or you do not have "
                                                  "access to it.")

    def within_limits(self, token: str) -> bool:
        refused = self.state.count(token)
        if refused:
            self.send_json(429, faults.THROTTLE if refused == "throttle" else faults.QUOTA)
        return not refused

    def fault_answered(self, f: dict, stream: bool, partial: bytes = b"") -> bool:
        """Answers with a queued fault; False for stream faults the stream itself will play."""
        kind = f["kind"]
        extra = {"Retry-After": str(f["retry_after"])} if f.get("retry_after") is not None else {}
        if kind in faults.IMMEDIATE:
            self.send_json(*faults.IMMEDIATE[kind], headers=extra)
        elif kind == "auth401":
            self.send_json(401, faults.auth_401(), extra)
        elif kind == "timeout504" or (kind == "midstream504" and not stream):
            self.send_bytes(504, b"stream timeout", "text/plain", extra)
        elif kind == "server500_empty":
            self.send_bytes(500, b"", None, extra)
        elif kind == "invalid_json" or (kind == "invalid_sse" and not stream):
            self.send_bytes(200, b"{not json", "application/json")
        elif kind == "reset_before_headers":
            self.reset_connection()
        elif kind in ("stall", "reset_midstream") and not stream and partial:
            # A whole-body answer cut short: headers and half the body, then silence or RST.
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(partial)))
            self.end_headers()
            self.wfile.write(partial[:len(partial) // 2])
            if kind == "stall":
                self.server.stopping.wait(float(f.get("seconds", self.state.snapshot()["stall_seconds"])))
            self.reset_connection()
        else:
            return False
        return True

    def chat(self, raw: bytes) -> None:
        token = self.authorised()
        if token is None:
            return
        self.state.bump("chat_requests")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            body = None
        stream = isinstance(body, dict) and body.get("stream") is True
        fault = self.state.take_fault(faults.API_FAULTS, token, self.path)
        if fault and self.fault_answered(fault, stream):
            return
        if body is None:
            return self.send_json(400, chat.error("invalid_parameter_error", "The request body is not valid JSON."))
        sw = self.state.snapshot()
        problem = chat.validate(body, sw)
        if problem:
            return self.send_json(*problem)
        if not self.within_limits(token):
            return
        plan = chat.plan(body, sw, self.state.cache.serve(token, body))
        if sw["first_byte_delay_ms"]:
            self.server.stopping.wait(sw["first_byte_delay_ms"] / 1000)
        if not stream:
            answer = dumps(chat.completion(body, plan))
            if fault and self.fault_answered(fault, False, answer):
                return
            return self.send_bytes(200, answer, "application/json")
        self.stream(chat.chunks(body, plan, sw), sw, fault)

    def stream(self, events, sw: dict, queued: dict | None) -> None:
        fault = queued["kind"] if queued else None
        self.start_stream()
        content_sent = 0
        for i, event in enumerate(events):
            choices = event["choices"]
            tail = not choices or choices[0]["finish_reason"] is not None
            if fault == "stall" and i == 1:
                fault = None
                if self.server.stopping.wait(float(queued.get("seconds", sw["stall_seconds"]))):
                    return self.reset_connection()
            if fault in ("midstream504", "reset_midstream") and (content_sent >= 2 or tail):
                if fault == "reset_midstream":
                    return self.reset_connection()
                self.write_event(faults.MIDSTREAM_504, sw["split_writes"])
                self.end_stream()
                self.close_connection = True
                return
            if fault == "error_finish" and (content_sent >= 1 or tail):
                # R6: HTTP 200 all along; the error's text arrives as content with finish_reason error_finish.
                text = str(queued.get("message") or faults.ERROR_FINISH_TEXT)
                self.write_event(b"data: " + dumps({**event, "choices": [{
                    "index": 0, "delta": {"content": text}, "finish_reason": "error_finish", "logprobs": None}],
                    "usage": None}) + b"\n\n", sw["split_writes"])
                break
            if i and sw["gap_ms"]:
                self.server.stopping.wait(sw["gap_ms"] / 1000)
            self.write_event(b"data: " + dumps(event) + b"\n\n", sw["split_writes"])
            delta = choices[0]["delta"] if choices else {}
            content_sent += bool(delta.get("content") or delta.get("tool_calls"))
            if fault == "invalid_sse" and content_sent:
                fault = None
                self.write_event(faults.GARBAGE_SSE, sw["split_writes"])
        self.write_event(b"data: [DONE]\n\n", sw["split_writes"])
        self.end_stream()


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], state: State, quiet: bool) -> None:
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        super().__init__(addr, Handler)
        self.state = state
        self.quiet = quiet
        self.stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    def server_bind(self) -> None:
        TCPServer.server_bind(self)  # skips HTTPServer's getfqdn(), a DNS lookup that can hang offline
        self.server_name, self.server_port = self.server_address[:2]

    def track(self, conn: socket.socket, alive: bool) -> None:
        with self._conns_lock:
            (self._conns.add if alive else self._conns.discard)(conn)

    def close_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
