"""Qwen OAuth over HTTP, as qwen-code does it: device authorisation with PKCE, polling, refresh.

Every request is form-encoded like qwen-code's `encodeURIComponent` (`urlencode(d, quote_via=quote)`: a
space is `%20`, not `+`) with `Content-Type: application/x-www-form-urlencoded` and `Accept:
application/json`; the device-code request adds `x-request-id: <uuid4>`. Source: qwen-code
`packages/core/src/qwen/qwenOAuth2.ts` (docs/accounts.md).

The HTTP fingerprint is that of Node's fetch, which qwen-code uses: `user-agent: node`, `accept-encoding:
gzip, deflate`, `accept-language: *`, `sec-fetch-mode: cors` (the OAuth host has answered refreshes
without a Qwen-like agent with a non-JSON WAF page). Whatever the server says in an error is passed through
`redact()` before it becomes a message: no token-shaped value reaches an error, a status row or a file.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import secrets
import ssl
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from ..settings.auth import AuthSettings
from .oauth_replies import redact

if TYPE_CHECKING:  # httpx (1.6 MB) is imported at the first OAuth call: a gateway of key accounts never needs it
    import httpx

SCOPE = "openid profile email model.completion"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
TIMEOUT_S, CONNECT_TIMEOUT_S = 30.0, 10.0
# Node's fetch (undici), as qwen-code sends it, plus qwen-code's own two headers: on every OAuth call.
NODE_FETCH_HEADERS = {"user-agent": "node", "accept-encoding": "gzip, deflate", "accept-language": "*",
                      "sec-fetch-mode": "cors"}
HEADERS = {**NODE_FETCH_HEADERS, "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
POLL_START_S = 2.0
POLL_MAX_S = 10.0
SLOW_DOWN_FACTOR = 1.5
DEFAULT_DEVICE_EXPIRES_S = 1800

# What a single device-token poll can say.
SUCCESS, PENDING, SLOW_DOWN, TRANSIENT = "success", "pending", "slow_down", "transient"


class OAuthError(Exception):
    """A failure worth telling the user about; `code` is the OAuth error string when there is one."""

    def __init__(self, message: str, code: str | None = None, *, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class RefreshRejected(OAuthError):
    """400/401 on refresh: the refresh token is dead; the user must log in again."""


class NetworkError(OAuthError):
    """The OAuth server could not be reached or did not answer in time."""


def pkce_pair() -> tuple[str, str]:
    """(verifier, challenge): 32 random bytes base64url (43 chars); S256 challenge without padding."""
    verifier = secrets.token_urlsafe(32)
    return verifier, pkce_challenge(verifier)


def pkce_challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def form(data: dict) -> bytes:
    """encodeURIComponent-style: spaces as %20, like qwen-code (not +)."""
    return urlencode(data, quote_via=quote).encode()


def client(settings: AuthSettings | None = None) -> httpx.AsyncClient:
    """trust_env=False: never an HTTP(S)_PROXY that may be this gateway itself; the proxy and CAs come from
    the settings instead (the gateway fills them from its network settings, its own listeners left out)."""
    import httpx

    timeout = httpx.Timeout(TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
    if settings is None:
        return httpx.AsyncClient(timeout=timeout, trust_env=False)
    verify: ssl.SSLContext | bool = settings.tls_verify
    if settings.tls_verify and (settings.ca_file or settings.ca_dir):
        verify = ssl.create_default_context(cafile=settings.ca_file, capath=settings.ca_dir)
    return httpx.AsyncClient(timeout=timeout, trust_env=False, proxy=settings.proxy, verify=verify)


def _json(r: httpx.Response) -> dict | None:
    try:
        data = r.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _snippet(r: httpx.Response, secrets: tuple[str, ...] = ()) -> str:
    """The start of a reply body, redacted (before it is cut, so no half token survives)."""
    try:
        text = r.text
    except Exception:  # undecodable body
        return f"<{len(r.content)} bytes>"
    return redact(text, secrets=secrets)


def _status(r: httpx.Response) -> str:
    return f"{r.status_code} {redact(r.reason_phrase, limit=60)}".rstrip()


def _field(data: dict | None, key: str, secrets: tuple[str, ...] = (), default: str | None = None) -> str | None:
    """A string field of an error reply, redacted; `default` when absent."""
    value = (data or {}).get(key)
    if value is None:
        return default
    return redact(str(value), secrets=secrets, limit=200)


async def device_code(settings: AuthSettings, challenge: str, *, http: httpx.AsyncClient | None = None) -> dict:
    """Start a device authorisation. The reply has device_code, user_code, verification_uri(_complete),
    expires_in."""
    body = form({"client_id": settings.client_id, "scope": SCOPE, "code_challenge": challenge,
                 "code_challenge_method": "S256"})
    url = f"{settings.oauth_base_url}/api/v1/oauth2/device/code"
    import httpx

    try:
        async with _maybe(http, settings) as c:
            r = await c.post(url, content=body, headers={**HEADERS, "x-request-id": str(uuid.uuid4())})
    except httpx.HTTPError as e:
        raise NetworkError(f"Device authorization failed: cannot reach {settings.oauth_base_url} "
                           f"({type(e).__name__})", "network") from e
    data = _json(r)
    if not r.is_success:
        raise OAuthError(f"Device authorization failed: {_status(r)}. Response: {_snippet(r)}",
                         _field(data, "error") or "server", status=r.status_code)
    if data is None or "device_code" not in data:
        raise OAuthError(f"Device authorization failed: {_field(data, 'error', default='Unknown error')} - "
                         f"{_field(data, 'error_description', default='No details provided')}",
                         _field(data, "error") or "server", status=r.status_code)
    return data


async def poll_once(settings: AuthSettings, device_code_: str, verifier: str, *,
                    http: httpx.AsyncClient | None = None) -> tuple[str, dict | str | None]:
    """One device-token poll: (SUCCESS, token) | (PENDING, None) | (SLOW_DOWN, None) | (TRANSIENT, message).
    Raises OAuthError when polling must stop (denied, expired, rate-limited, unknown device code)."""
    body = form({"grant_type": DEVICE_GRANT, "client_id": settings.client_id, "device_code": device_code_,
                 "code_verifier": verifier})
    import httpx

    try:
        async with _maybe(http, settings) as c:
            r = await c.post(f"{settings.oauth_base_url}/api/v1/oauth2/token", content=body, headers=HEADERS)
    except httpx.HTTPError as e:  # qwen-code logs and keeps polling
        return TRANSIENT, f"Error polling for token: network error ({type(e).__name__})"
    data = _json(r)
    if r.status_code == 200 and data is not None:
        if isinstance(data.get("access_token"), str) and data["access_token"]:
            return SUCCESS, data
        return TRANSIENT, "Error polling for token: reply without access_token"
    if data is None:
        return TRANSIENT, f"Device token poll failed: {_status(r)}. Response: {_snippet(r)}"
    err = _field(data, "error")
    if err == "authorization_pending" and r.status_code == 400:
        return PENDING, None
    if err == "slow_down" and r.status_code in (400, 429):  # qwen-code expects 429, RFC 8628 says 400
        return SLOW_DOWN, None
    if r.status_code == 401:
        raise OAuthError("Device code expired or invalid, please restart the authorization process.",
                         err or "invalid_grant", status=401)
    if r.status_code == 429:
        raise OAuthError("Too many requests. The server is rate limiting our requests, please try again later.",
                         "rate_limit", status=429)
    message = f"Device token poll failed: {err or 'Unknown error'} - {_field(data, 'error_description')}"
    if r.status_code == 400:
        # RFC 8628 §3.5: any other error ends the flow. (qwen-code logs it and polls on until its attempts
        # run out; someone at a terminal wants the answer now.)
        raise OAuthError(message, err or "invalid_request", status=400)
    return TRANSIENT, message  # 5xx and the like: as qwen-code, poll on


async def poll_token(settings: AuthSettings, device: dict, verifier: str, *,
                     on_event: Callable[[str, str | None], None] | None = None, sleep=asyncio.sleep) -> dict:
    """Poll until the user approves, as qwen-code's authWithQwenDeviceFlow: poll, then wait; 2 s to
    start, back to 2 s on authorization_pending, slow_down x1.5 up to 10 s; ceil(expires_in/2) attempts."""
    interval = POLL_START_S
    expires_in = device.get("expires_in") or DEFAULT_DEVICE_EXPIRES_S
    attempts = max(1, math.ceil(float(expires_in) / 2))
    async with client() as http:
        for _ in range(attempts):
            status, detail = await poll_once(settings, device["device_code"], verifier, http=http)
            if status == SUCCESS:
                assert isinstance(detail, dict)
                return detail
            if status == PENDING:
                interval = POLL_START_S
            elif status == SLOW_DOWN:
                interval = min(interval * SLOW_DOWN_FACTOR, POLL_MAX_S)
            if on_event is not None:
                on_event(status, detail if isinstance(detail, str) else None)
            await sleep(interval)
    raise OAuthError("Authorization timeout, please restart the process.", "timeout")


async def refresh(settings: AuthSettings, refresh_token: str, *, http: httpx.AsyncClient | None = None) -> dict:
    """The refresh grant. Raises RefreshRejected (400/401: log in again), NetworkError, OAuthError."""
    body = form({"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": settings.client_id})
    import httpx

    try:
        async with _maybe(http, settings) as c:
            r = await c.post(f"{settings.oauth_base_url}/api/v1/oauth2/token", content=body, headers=HEADERS)
    except httpx.HTTPError as e:
        raise NetworkError(f"Token refresh failed: cannot reach {settings.oauth_base_url} ({type(e).__name__})",
                           "network") from e
    data = _json(r)
    held = (refresh_token,)  # an echo of it is redacted whatever its shape
    if r.status_code in (400, 401):
        detail = f"{_field(data, 'error', held) or r.status_code}: {_field(data, 'error_description', held) or ''}"
        raise RefreshRejected(f"Refresh token expired or invalid ({detail.strip(': ')})", "refresh_rejected",
                              status=r.status_code)
    if not r.is_success:
        raise OAuthError(f"Token refresh failed: {_status(r)}. Response: {_snippet(r, held)}", "server",
                         status=r.status_code)
    if data is None:
        raise OAuthError(f"Qwen OAuth refresh returned invalid JSON: {_snippet(r, held)}", "invalid_json",
                         status=r.status_code)
    if data.get("error"):
        raise OAuthError(f"Token refresh failed: {_field(data, 'error', held)} - "
                         f"{_field(data, 'error_description', held)}", "server", status=r.status_code)
    if not isinstance(data.get("access_token"), str) or not data["access_token"]:
        raise OAuthError("Token refresh failed: reply without access_token", "server", status=r.status_code)
    return data


def creds_from_token(data: dict, *, previous: dict | None = None, now_ms: float | None = None) -> dict:
    """The file contents after a login (previous=None) or a refresh. A refresh reply without a
    refresh_token keeps the old one; without resource_url keeps the old one too (qwen-code would drop
    it and silently move the account to the DashScope default; the proxies keep it)."""
    previous = previous or {}
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    try:
        expires_in = float(data.get("expires_in") or 3600)
    except (TypeError, ValueError):
        expires_in = 3600.0
    return {
        "access_token": data["access_token"],
        "token_type": data.get("token_type") or "Bearer",
        "refresh_token": data.get("refresh_token") or previous.get("refresh_token"),
        "resource_url": data.get("resource_url") or previous.get("resource_url"),
        "expiry_date": int(now_ms + expires_in * 1000),
    }


class _maybe:
    """`async with _maybe(http, settings) as c`: the given client (left open) or a fresh one (closed after)."""

    def __init__(self, http: httpx.AsyncClient | None, settings: AuthSettings) -> None:
        self.http = http
        self.settings = settings
        self.own: httpx.AsyncClient | None = None

    async def __aenter__(self) -> httpx.AsyncClient:
        if self.http is not None:
            return self.http
        self.own = client(self.settings)
        return self.own

    async def __aexit__(self, *exc) -> None:
        if self.own is not None:
            await self.own.aclose()
