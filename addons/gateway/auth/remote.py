"""Remote login: a device flow started and finished over HTTP, for a gateway running where nobody has a
terminal. The gateway exposes it as

    POST /auth/initiate {"account": "work"?}  -> RemoteLogin.initiate(account)
    POST /auth/poll     {"id": "..."}         -> RemoteLogin.poll(id)

`initiate` returns {device_code_id, user_code, verification_uri, verification_uri_complete, expires_in,
interval, account}: `device_code_id` is an opaque local id; the real device code and the PKCE verifier stay
in this process. `poll` makes at most one call to the OAuth server per `interval` (faster polls are answered
"pending" locally) and returns {status: "pending" | "success" | "error", ...}; on success the login is
saved exactly as `qwen-auth login` / `qwen-auth add NAME` would. Sessions live in memory until they expire.
Protect these endpoints like any other gateway endpoint (client keys): whoever approves the code decides
which Qwen account the gateway uses.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..accounts import OAUTH
from ..settings.auth import AuthSettings
from ..errors import GatewayError
from . import oauth
from .names import DEFAULT, check_name, iso
from .registry import Registry, save_login

MAX_SESSIONS = 32
KEEP_FINISHED_S = 120.0  # a finished session still answers poll() (idempotent) for this long


class RemoteLoginError(GatewayError):
    """initiate() refused: `status` is the HTTP status to answer with, `code` a short error code (the gateway
    answers it as it is, in the client's format)."""

    def __init__(self, message: str, *, status: int = 400, code: str = "invalid_request") -> None:
        super().__init__(status, message, code=code)


@dataclass
class _Session:
    account: str
    device_code: str = field(repr=False)
    verifier: str = field(repr=False)
    expires_at: float  # monotonic
    interval: float = oauth.POLL_START_S
    next_poll_at: float = 0.0
    polling: bool = False
    result: dict | None = None
    finished_at: float = 0.0


class RemoteLogin:
    def __init__(self, settings: AuthSettings, *, on_success: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.on_success = on_success  # e.g. the gateway's pool.reload
        self._clock = clock
        self._sessions: dict[str, _Session] = {}

    def _prune(self) -> None:
        now = self._clock()
        for sid, s in list(self._sessions.items()):
            if (s.result is None and now > s.expires_at) or (s.result is not None and
                                                             now - s.finished_at > KEEP_FINISHED_S):
                del self._sessions[sid]

    async def initiate(self, account: str | None = None) -> dict:
        name = account or DEFAULT
        try:
            check_name(name, allow_default=True)
        except ValueError as e:
            raise RemoteLoginError(str(e), code="invalid_account") from e
        reg = Registry(self.settings)
        other = await asyncio.to_thread(lambda: reg.find(reg.load(), name))
        if other is not None and other.get("kind") != OAUTH:
            raise RemoteLoginError(f"account {name!r} already exists as a {other.get('kind')} account", status=409,
                                   code="account_exists")
        self._prune()
        if sum(1 for s in self._sessions.values() if s.result is None) >= MAX_SESSIONS:
            raise RemoteLoginError("too many logins in progress; finish or wait for one", status=429,
                                   code="too_many_logins")
        verifier, challenge = oauth.pkce_pair()
        try:
            device = await oauth.device_code(self.settings, challenge)
        except oauth.OAuthError as e:
            raise RemoteLoginError(str(e), status=502, code="oauth_unavailable") from e
        expires_in = float(device.get("expires_in") or oauth.DEFAULT_DEVICE_EXPIRES_S)
        sid = secrets.token_urlsafe(18)
        self._sessions[sid] = _Session(account=name, device_code=device["device_code"], verifier=verifier,
                                       expires_at=self._clock() + expires_in)
        return {"device_code_id": sid, "user_code": device.get("user_code"),
                "verification_uri": device.get("verification_uri"),
                "verification_uri_complete": device.get("verification_uri_complete") or device.get("verification_uri"),
                "expires_in": int(expires_in), "interval": int(oauth.POLL_START_S), "account": name}

    async def poll(self, id: str) -> dict:
        self._prune()
        s = self._sessions.get(id or "")
        if s is None:
            return {"status": "error", "error": "unknown_id",
                    "message": "No such login in progress (unknown or expired id); start again with /auth/initiate."}
        if s.result is not None:
            return dict(s.result)
        now = self._clock()
        if now > s.expires_at:
            return self._finish(id, s, {"status": "error", "error": "expired_token",
                                        "message": "Authorization timeout, please restart the process."})
        if s.polling or now < s.next_poll_at:
            return {"status": "pending", "interval": s.interval, "account": s.account}
        s.polling = True
        try:
            status, detail = await oauth.poll_once(self.settings, s.device_code, s.verifier)
        except oauth.OAuthError as e:
            return self._finish(id, s, {"status": "error", "error": e.code or "oauth_error", "message": str(e)})
        finally:
            s.polling = False
        if status == oauth.SUCCESS:
            assert isinstance(detail, dict)
            try:
                _path, creds = await asyncio.to_thread(save_login, self.settings, s.account, detail)
            except (OSError, ValueError) as e:
                return self._finish(id, s, {"status": "error", "error": "save_failed",
                                            "message": f"Approved, but the login could not be saved: {e}"})
            if self.on_success is not None:
                self.on_success(s.account)
            return self._finish(id, s, {"status": "success", "account": s.account,
                                        "expires_at": iso(creds["expiry_date"] / 1000)})
        if status == oauth.SLOW_DOWN:
            s.interval = min(s.interval * oauth.SLOW_DOWN_FACTOR, oauth.POLL_MAX_S)
        elif status == oauth.PENDING:
            s.interval = oauth.POLL_START_S
        s.next_poll_at = self._clock() + s.interval
        out = {"status": "pending", "interval": s.interval, "account": s.account}
        if status == oauth.TRANSIENT and detail:
            out["message"] = detail
        return out

    def _finish(self, sid: str, s: _Session, result: dict) -> dict:
        s.result = {**result, "account": s.account}
        s.finished_at = self._clock()
        s.device_code = s.verifier = ""  # nothing left to steal
        return dict(s.result)

    def sessions(self) -> int:
        """Logins in progress (for /health)."""
        self._prune()
        return sum(1 for s in self._sessions.values() if s.result is None)
