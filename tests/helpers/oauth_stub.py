"""A scripted Qwen OAuth token endpoint on loopback, served from a thread of the test process (no process
to start): each POST is recorded and answered by the next queued reply, else by the default one.

    stub = OAuthStub()                       # http://127.0.0.1:<port>
    stub.queue(500, {"error": "...", "access_token": "leaked"})
    stub.default = stub.issue               # a fresh token per refresh
    ...
    stub.close()
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

Reply = tuple[int, object]  # (status, dict -> JSON | str | bytes)


class OAuthStub:
    def __init__(self, *, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.requests: list[dict] = []
        self.issued: list[dict] = []
        self._queue: deque[Reply | Callable[[dict], Reply]] = deque()
        self._lock = threading.Lock()
        self.default: Callable[[dict], Reply] = self.issue
        stub = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10

            def log_message(self, *a) -> None:
                pass

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                form = dict(parse_qsl(self.rfile.read(n).decode()))
                status, body = stub._answer({"path": self.path, "form": form,
                                             "headers": {k.lower(): v for k, v in self.headers.items()}})
                raw = body if isinstance(body, bytes) else (
                    body.encode() if isinstance(body, str) else json.dumps(body).encode())
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if isinstance(body, dict) else "text/plain")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01},
                                       daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _answer(self, request: dict) -> Reply:
        with self._lock:
            self.requests.append(request)
            reply = self._queue.popleft() if self._queue else self.default
        if self.delay_s:
            time.sleep(self.delay_s)
        return reply(request["form"]) if callable(reply) else reply

    def queue(self, status: int, body: object) -> None:
        with self._lock:
            self._queue.append((status, body))

    def issue(self, form: dict) -> Reply:
        """A successful refresh: a new access token and a rotated refresh token."""
        token = {"access_token": f"stub-at-{secrets.token_urlsafe(24)}", "token_type": "Bearer",
                 "refresh_token": f"stub-rt-{secrets.token_urlsafe(24)}", "expires_in": 3600}
        with self._lock:
            self.issued.append(token)
        return 200, token

    @property
    def refreshes(self) -> int:
        return sum(1 for r in self.requests if r["form"].get("grant_type") == "refresh_token")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
