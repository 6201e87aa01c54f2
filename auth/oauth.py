"""Qwen OAuth over HTTP, as qwen-code does it: device authorisation with PKCE, polling, refresh."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import secrets
import time
import uuid
from collections.abc import Callable
from urllib.parse import quote, urlencode

import httpx

from .settings import AuthSettings

SCOPE = "openid profile email model.completion"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class OAuthError(Exception):
    """A failure worth telling the user about; `code` is the OAuth error string when there is one."""

    def __init__(self, message: str, code: str | None = None, *, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class RefreshRejected(OAuthError):
    """400/401 on refresh: the refresh token is dead; the user must log in again."""


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(32)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def form(data: dict) -> bytes:
    """encodeURIComponent-style: spaces as %20, like qwen-code (not +)."""
    return urlencode(data, quote_via=quote).encode()


HEADERS = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}


def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=TIMEOUT, trust_env=False)


async def device_code(settings: AuthSettings, challenge: str) -> dict:
    body = form({"client_id": settings.client_id, "scope": SCOPE, "code_challenge": challenge,
                 "code_challenge_method": "S256"})
    async with _client() as c:
        r = await c.post(f"{settings.oauth_base_url}/api/v1/oauth2/device/code", content=body,
                         headers={**HEADERS, "x-request-id": str(uuid.uuid4())})
    try:
        data = r.json()
    except ValueError:
        data = None
    if r.status_code // 100 != 2 or not isinstance(data, dict):
        raise OAuthError(f"Device authorization failed: {r.status_code} {r.reason_phrase}. Response: {r.text[:300]}",
                         status=r.status_code)
    if "device_code" not in data:
        raise OAuthError(f"Device authorization failed: {data.get('error')} - {data.get('error_description')}",
                         data.get("error"))
    return data


async def poll_token(settings: AuthSettings, device: dict, verifier: str, *,
                     on_pending: Callable[[str], None] | None = None, sleep=asyncio.sleep) -> dict:
    """Poll until the user approves. 2 s to start; slow_down (429, or 400 per RFC 8628) x1.5 up to 10 s."""
    interval = 2.0
    attempts = math.ceil(float(device.get("expires_in") or 1800) / 2)
    body = form({"grant_type": DEVICE_GRANT, "client_id": settings.client_id, "device_code": device["device_code"],
                 "code_verifier": verifier})
    async with _client() as c:
        for _ in range(attempts):
            await sleep(interval)
            r = await c.post(f"{settings.oauth_base_url}/api/v1/oauth2/token", content=body, headers=HEADERS)
            try:
                data = r.json()
            except ValueError:
                data = None
            if r.status_code == 200 and isinstance(data, dict) and isinstance(data.get("access_token"), str) \
                    and data["access_token"]:
                return data
            err = data.get("error") if isinstance(data, dict) else None
            if err == "slow_down" and r.status_code in (400, 429):
                interval = min(interval * 1.5, 10.0)
                _tell(on_pending, "slow_down")
                continue
            if r.status_code == 400 and err == "authorization_pending":
                interval = 2.0
                _tell(on_pending, "pending")
                continue
            if r.status_code == 401:
                raise OAuthError("Device code expired or invalid, please restart the authorization process.",
                                 "invalid_grant", status=401)
            if r.status_code == 429:
                raise OAuthError("Too many requests. The server is rate limiting our requests, please try again "
                                 "later.", "rate_limit", status=429)
            if err in ("expired_token", "access_denied"):
                # qwen-code logs these and keeps polling; a person at a terminal wants the answer now.
                raise OAuthError(f"Device token poll failed: {err} - {data.get('error_description', '')}".strip(),
                                 err, status=r.status_code)
            if err is None:
                raise OAuthError(f"Device token poll failed: {r.status_code} {r.reason_phrase}. Response: "
                                 f"{r.text[:300]}", status=r.status_code)
            _tell(on_pending, err)
    raise OAuthError("Authorization timeout, please restart the process.", "timeout")


def _tell(cb, what: str) -> None:
    if cb is not None:
        cb(what)


async def refresh(settings: AuthSettings, refresh_token: str) -> dict:
    body = form({"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": settings.client_id})
    try:
        async with _client() as c:
            r = await c.post(f"{settings.oauth_base_url}/api/v1/oauth2/token", content=body, headers=HEADERS)
    except httpx.HTTPError as e:
        raise OAuthError(f"Token refresh failed: network error ({type(e).__name__})", "network") from e
    if r.status_code in (400, 401):
        try:
            detail = r.json().get("error_description") or r.json().get("error")
        except (ValueError, AttributeError):
            detail = r.text[:200]
        raise RefreshRejected(f"Refresh token expired or invalid ({detail})", "refresh_rejected",
                              status=r.status_code)
    if r.status_code // 100 != 2:
        raise OAuthError(f"Token refresh failed: {r.status_code} {r.reason_phrase}", "server", status=r.status_code)
    try:
        data = r.json()
    except ValueError as e:
        raise OAuthError("Qwen OAuth refresh returned invalid JSON", "invalid_json") from e
    if not isinstance(data, dict) or data.get("error") or not isinstance(data.get("access_token"), str):
        raise OAuthError(f"Token refresh failed: {data.get('error') if isinstance(data, dict) else data}", "server")
    return data


def creds_from_token(data: dict, *, previous: dict | None = None) -> dict:
    """The file contents after a login or a refresh (keeping the old refresh token / resource_url)."""
    previous = previous or {}
    out = {
        "access_token": data["access_token"],
        "token_type": data.get("token_type") or "Bearer",
        "refresh_token": data.get("refresh_token") or previous.get("refresh_token"),
        # qwen-code drops resource_url when a refresh reply lacks it; keep it, as the proxy seeds do.
        "resource_url": data.get("resource_url") or previous.get("resource_url"),
        "expiry_date": int(time.time() * 1000 + float(data.get("expires_in") or 3600) * 1000),
    }
    return out
