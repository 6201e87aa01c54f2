"""The web app's header set (qwen-web-protocol.md §1.3), the credential injected: the browser's User-Agent and
bx-* headers and the cookie jar (its `token` cookie the current access token), plus `Authorization: Bearer`
on the completion. `chats/new` is a cookie-only route (DIAG): no `Authorization` there. Only the engine's
request carries these; the exchange record shows them redacted (redact.shown_headers, SECRET_HEADERS)."""

from __future__ import annotations

import time
import uuid
from urllib.parse import urlsplit

from ...accounts import Credential

SPA_VERSION = "0.2.66"  # the SPA build the notes saw last (§1.3: QP's constant); a write without it: Bad_Request
CHROME_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/150.0.0.0 Safari/537.36")  # only when the import had no User-Agent


def url(cred: Credential, path: str) -> tuple[str, str]:
    """(full URL, Host header) for a path under the account's web base."""
    parts = urlsplit(cred.base_url)
    return f"{parts.scheme}://{parts.netloc}{path}", parts.netloc


def timezone(now: float | None = None) -> str:
    """JS `Date().toString()` style, as the SPA sends it (UTC: the gateway does not know the browser's zone)."""
    return time.strftime("%a %b %d %Y %H:%M:%S GMT+0000", time.gmtime(time.time() if now is None else now))


def web_headers(cred: Credential, host: str, *, bearer: bool, referer: str = "/") -> list[tuple[str, str]]:
    jar = {**cred.cookies, "token": cred.token}
    origin = f"{urlsplit(cred.base_url).scheme}://{host}"
    browser = {k.lower(): v for k, v in cred.headers.items()}
    headers = [("Host", host), ("User-Agent", browser.get("user-agent") or CHROME_UA),
               ("Accept", "application/json"), ("Accept-Language", "en-US,en;q=0.9"),
               ("Content-Type", "application/json"), ("source", "web"), ("version", SPA_VERSION),
               ("timezone", timezone()), ("x-request-id", str(uuid.uuid4())), ("x-accel-buffering", "no"),
               ("Origin", origin), ("Referer", origin + referer), ("sec-fetch-dest", "empty"),
               ("sec-fetch-mode", "cors"), ("sec-fetch-site", "same-origin")]
    if bearer:
        headers.append(("Authorization", f"Bearer {cred.token}"))
    headers += [(k, v) for k, v in browser.items() if k.startswith("bx-")]
    headers.append(("Cookie", "; ".join(f"{k}={v}" for k, v in jar.items())))
    return headers
