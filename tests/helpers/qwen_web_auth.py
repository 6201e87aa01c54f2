"""Qwen Chat web sessions for the unit tests of auth/web_cookies.py, web_session.py and web_account.py: a logged-in
browser's cookies in the three export formats, a session made of them, and a scripted auth.qwen.ai refresh
endpoint served from a thread of this process on loopback (AuthStub, the `stub` fixture)."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from qwen_gateway.accounts import WEB
from qwen_gateway.auth import web_cookies as wc
from qwen_gateway.auth import web_session as ws
from qwen_gateway.upstream.pool.pool import AccountPool
from qwen_gateway.auth.registry import Registry
from qwen_gateway.settings.auth import AuthSettings


NOW = time.time()


FAR = int(NOW) + 30 * 86400


UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/151.0.0.0 Safari/537.36"


def b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def jwt(exp: float | None, **claims) -> str:
    """A JWT as the SPA gets it (the signature is never checked by the gateway)."""
    payload = {"id": "9f1c2e4a-user", "type": "access_token", **claims, **({"exp": int(exp)} if exp else {})}
    return f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64(payload)}.Zm9yZ2VkLXNpZ25hdHVyZS0xMjM0NTY3ODkw"


# Long-lived enough that no test meets the refresh margin however late in a run it comes (the real ones
# live ~15 min; the tests that need an expiring one make their own).
TOKEN = jwt(NOW + 12 * 3600)


REFRESH = "rt_7Hq2LmX9vB4nK8pQ1sT6wY3zA5cE0fG"


ITNA = "eqGxRDBDgQiQ3GHD0Dcmi+QNDTxDAUxZe2DDIi4D0Dx7DItx0D"


ITNA2 = "eqGxRDBDgQiQ3GHD0Dcmi+QNDTxDAUxZe2DDIi4D0Dx7DItx0D2"


SECRETS = (TOKEN, REFRESH, ITNA, ITNA2, "acw-tc-0b3f4a9d17563", "x-ap-ap-southeast-1-7", "cna-Ab12Cd34Ef56")


# A "Get cookies.txt LOCALLY" export of a browser logged in at chat.qwen.ai (other sites included).
NETSCAPE = "\n".join([
    "# Netscape HTTP Cookie File",
    "# https://curl.haxx.se/rfc/cookie_spec.html",
    "# This is a generated file! Do not edit.",
    "",
    f".qwen.ai\tTRUE\t/\tTRUE\t{FAR}\ttoken\t{TOKEN}",
    f"#HttpOnly_.qwen.ai\tTRUE\t/\tTRUE\t{FAR}\trefresh_token\t{REFRESH}",
    f"chat.qwen.ai\tFALSE\t/\tFALSE\t{FAR}\tssxmod_itna\t{ITNA}",
    f"chat.qwen.ai\tFALSE\t/\tFALSE\t{FAR}\tssxmod_itna2\t{ITNA2}",
    "#HttpOnly_chat.qwen.ai\tFALSE\t/\tFALSE\t0\tacw_tc\tacw-tc-0b3f4a9d17563",
    f".qwen.ai\tTRUE\t/\tTRUE\t{FAR}\tx-ap\tx-ap-ap-southeast-1-7",
    f".qwen.ai\tTRUE\t/\tFALSE\t{FAR}\tcna\tcna-Ab12Cd34Ef56",
    f".qwen.ai\tTRUE\t/\tTRUE\t{int(NOW) - 3600}\tisg\tisg-expired-value",
    f".google.com\tTRUE\t/\tTRUE\t{FAR}\tNID\tgoogle-nid-value",
    f".alicdn.com\tTRUE\t/\tTRUE\t{FAR}\tcna\talicdn-cna-value",
    f".notqwen.ai\tTRUE\t/\tTRUE\t{FAR}\ttoken\tnot-ours",
]) + "\r\n"


# page.context().storage_state() of a Playwright session logged in at chat.qwen.ai (gen B: token in
# localStorage, no token cookie).
PLAYWRIGHT = json.dumps({
    "cookies": [
        {"name": "refresh_token", "value": REFRESH, "domain": ".qwen.ai", "path": "/", "expires": FAR,
         "httpOnly": True, "secure": True, "sameSite": "Lax"},
        {"name": "ssxmod_itna", "value": ITNA, "domain": "chat.qwen.ai", "path": "/", "expires": FAR,
         "httpOnly": False, "secure": False, "sameSite": "Lax"},
        {"name": "acw_tc", "value": "acw-tc-0b3f4a9d17563", "domain": "chat.qwen.ai", "path": "/",
         "expires": -1, "httpOnly": True, "secure": False, "sameSite": "Lax"},
        {"name": "_ga", "value": "GA1.1.123.456", "domain": ".google-analytics.com", "path": "/", "expires": FAR,
         "httpOnly": False, "secure": False, "sameSite": "Lax"},
    ],
    "origins": [{"origin": "https://chat.qwen.ai", "localStorage": [
        {"name": "i18nextLng", "value": "en-US"}, {"name": "token", "value": TOKEN}]}],
}, indent=2)


HEADER = f"Cookie: cna=cna-Ab12Cd34Ef56; token={TOKEN};\n ssxmod_itna={ITNA}; refresh_token={REFRESH}"


def sample_session(**kw) -> ws.Session:
    cookies, _, _ = wc.parse_file(NETSCAPE)
    s = ws.new_session(TOKEN, wc.keep(cookies), user_agent=UA, bx={"bx-ua": "231!bxua-value", "bx-v": "2.5.36"})
    return ws.Session(**{**s.__dict__, **kw})


class AuthStub:
    """GET /api/v2/auths/refresh answered by queued (status, body, extra headers) replies."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.replies: deque[tuple[int, object, list[tuple[str, str]]]] = deque()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:
                pass

            def do_GET(self) -> None:
                stub.requests.append({"method": "GET", "path": self.path,
                                      "headers": {k.lower(): v for k, v in self.headers.items()}})
                status, body, extra = stub.replies.popleft() if stub.replies else (500, "no reply queued", [])
                raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html" if isinstance(body, str) else "application/json")
                for k, v in extra:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def queue(self, status: int, body: object, headers: list[tuple[str, str]] | None = None) -> None:
        self.replies.append((status, body, headers or []))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    s = AuthStub()
    yield s
    s.close()


NEW = jwt(NOW + 12 * 3600, n=2)


def run(coro):
    return asyncio.run(coro)


def settings_for(tmp_path, *, web_accounts: bool, auth_base: str = "http://127.0.0.1:9") -> AuthSettings:
    return AuthSettings.from_env(qwen_dir=tmp_path / ".qwen", state_dir=tmp_path / "state",
                                 oauth_base_url="http://127.0.0.1:9", default_api_base="http://127.0.0.1:9/v1",
                                 web_accounts=web_accounts, web_auth_base_url=auth_base,
                                 web_base_url="http://127.0.0.1:9/web", refresh_wait_s=5)


def import_session(settings: AuthSettings, name: str = "chat", **kw) -> None:
    ws.save(settings.web_session_path(name), sample_session(**kw))
    Registry(settings).put({"name": name, "kind": WEB}, replace=True)


def pool_for(settings: AuthSettings, providers=None) -> AccountPool:
    return AccountPool.from_settings(settings, providers=providers)


def shown(pool: AccountPool) -> str:
    return json.dumps(pool.status()) + "\n".join(pool.describe())
