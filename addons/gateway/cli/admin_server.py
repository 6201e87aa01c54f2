"""The admin API's listener (qwen_admin_listen, docs/admin-api.md): a small HTTP/1.1 server of its own, off by
default and on 127.0.0.1 unless a host is named, in threads beside the gateway's event loop — a key change blocks
while every running gateway confirms it, this one included, whose loop must stay free to answer.

Each request needs an admin credential as `Authorization: Bearer` (cli/admin_creds.py): nothing else is taken —
no cookie, no client key — so a page elsewhere cannot make a browser send one (CSRF), and no CORS header is ever
answered. Every change is logged with the credential's name (never its secret, never a body: a rotate's holds a
key) in the gateway's log, and journalled with the change (cli/keys_ops.py)."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from mitmproxy import exceptions

from ..settings.auth import AuthSettings
from . import admin_console, admin_creds, auth_check
from .admin_api import AdminApi, Answer, error

log = logging.getLogger("qwen")
MAX_BODY = 1 << 20  # a key change is a few hundred bytes
READ_S = 30.0  # a client that sends its request no faster than this is closed


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a request still waiting for the gateways' word does not hold the gateway's exit
    api: AdminApi
    settings: Callable[[], AuthSettings]


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = READ_S
    server_version = "qwen-gateway-admin"
    sys_version = ""

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PATCH = do_DELETE = do_PUT = do_GET

    def _serve(self) -> None:
        if self.command == "GET" and (found := admin_console.page(urlsplit(self.path).path)) is not None:
            self._file(*found)  # the console's files hold no data: what they show needs the credential
            return
        who = self._who()
        if who is None:
            self.close_connection = True  # its body unread: the connection cannot carry another request
            self._answer(error(401, "unauthorized", "an admin credential is needed: Authorization: Bearer "
                               "sk-qga-… (qwen-keys add-admin NAME); a client key is not one"),
                         {"WWW-Authenticate": 'Bearer realm="qwen-gateway admin"'})
            return
        length = self.headers.get("Content-Length", "0")
        if not length.isdigit() or int(length) > MAX_BODY:
            self.close_connection = True
            self._answer(error(413, "invalid_request", f"a body of at most {MAX_BODY} bytes", "body"))
            return
        body = self.rfile.read(int(length))
        url = urlsplit(self.path)
        answer = self.server.api.handle(self.command, url.path, parse_qs(url.query), body, who)
        if self.command != "GET":
            log.info("qwen: admin API: %s by %s: %d%s", f"{self.command} {url.path}", who, answer.status,
                     _unconfirmed(answer))
        self._answer(answer)

    def _who(self) -> str | None:
        scheme, _, secret = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            return None
        try:
            return admin_creds.who(self.server.settings().state_dir, secret.strip())
        except (OSError, ValueError, KeyError) as e:  # a credentials file unreadable: nobody is let in
            log.warning("qwen: admin API: cannot read %s: %s", admin_creds.FILENAME, type(e).__name__)
            return None

    def _answer(self, answer: Answer, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(answer.body, indent=2).encode() + b"\n"
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")  # a new key's answer is kept nowhere
        if self.close_connection:  # said, so a client does not send its next request into a closing connection
            self.send_header("Connection", "close")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _file(self, data: bytes, kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for name, value in admin_console.HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002  (http.server's own name)
        """http.server's own stderr lines: not kept (the changes are logged above, without secrets)."""


def _unconfirmed(answer: Answer) -> str:
    body = answer.body if isinstance(answer.body, dict) else {}
    silent = body.get("unconfirmed") or []
    return f" (not confirmed by {', '.join(silent)})" if silent else ""


class AdminListener:
    """The listener as qwen_admin_listen says: started, moved or stopped when the option changes."""

    def __init__(self, settings: Callable[[], AuthSettings], checks: auth_check.Checks = lambda provider: None) -> None:
        self.settings = settings
        self.checks = checks  # a provider's name -> its health check (components.drift_check)
        self.address: tuple[str, int] | None = None
        self._server: _Server | None = None

    def configure(self, address: tuple[str, int] | None) -> None:
        """Listen on `address` (None: off); one that cannot be listened on is the option's refusal."""
        if address == self.address:
            return
        self.stop()
        if address is None:
            return
        try:
            server = (_Server6 if ":" in address[0] else _Server)(address, _Handler)
        except OSError as e:
            raise exceptions.OptionsError(f"qwen_admin_listen: cannot listen on {address[0]}:{address[1]}: "
                                          f"{e.strerror}") from None
        server.api, server.settings = AdminApi(self.settings, self.checks), self.settings
        threading.Thread(target=server.serve_forever, name="qwen: admin API", daemon=True).start()
        self._server, self.address = server, address
        host, port = str(address[0]), int(server.server_address[1])
        shown = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        log.info("qwen: admin API on %s/admin/v1/, its console on %s/console (docs/admin-api.md)", shown, shown)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._server, self.address = None, None
