"""A Qwen Chat web account: a browser session imported with `qwen-auth add-web` (web_session.py).

Opt-in: loaded always (so `qwen-auth status` and /health show it), handed out only when
`AuthSettings.web_accounts` is true (the gateway's `--set qwen_web_accounts=true`). Using a web session
outside the browser is against the spirit, and possibly the letter, of Qwen's terms: accounts get banned.

Refreshed like an OAuth login (oauth_account.py), when the session carries auth.qwen.ai's `refresh_token`
cookie: lazily (within REFRESH_BUFFER_S of the token's `exp`, or forced after a 401), single flight in this
process, under a lock file across processes, re-reading the file first. The refreshed session (new token,
a rotated refresh cookie) is written before anything else. A refused refresh or an anti-bot page marks the
account needs_login (persisted): the user imports a fresh browser session. The file is never deleted.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

from ..accounts import WEB, AccountUnavailable, Credential
from ..settings.auth import AuthSettings
from . import oauth, web_cookies as wc
from . import web_session as ws
from .names import iso
from .refreshing import RefreshedFileAccount
from .state import AccountState

REFRESH_BUFFER_S = 60.0  # the access token lives ~15 min: refresh in its last minute
DISABLED = "disabled: --set qwen_web_accounts=true to use web accounts (risky: see the README)"
# Why a pool built without an upstream for the web kind never hands one out (the gateway's pairing has one:
# addons/gateway/components.py, upstream/qwenweb/).
NOT_SERVED = "requests are not served by Qwen Chat web accounts here (no upstream for the web kind)"
SERVED = ("Web accounts serve chat completions, the Responses API, legacy completions and the Messages API "
          "(text and tools; no images, no embeddings).")
WEB_WARNING = ("WARNING: qwen_web_accounts is on: Qwen Chat web accounts (chat.qwen.ai browser sessions) may be "
               "used. This automates your own Qwen account outside the browser, which Qwen may treat as a breach "
               "of its terms: expect anti-bot blocks and possibly a banned account. Turn it off with "
               "--set qwen_web_accounts=false.")


def reimport_hint(name: str) -> str:
    return f"import a fresh browser session: qwen-auth add-web {name} --replace --cookies FILE"


class WebAccount(RefreshedFileAccount[ws.Session]):
    kind = WEB
    stranded_kind = ws.STRANDED

    def __init__(self, name: str, path: Path, settings: AuthSettings, state: AccountState, *,
                 base_url: str | None = None, auth_base_url: str | None = None) -> None:
        super().__init__(name, path, settings, state)
        self.enabled = settings.web_accounts
        # the web API and refresh server the session was imported for (accounts.json), else the settings'
        self.base_url = (base_url or settings.web_base_url).rstrip("/")
        self.auth_base_url = (auth_base_url or settings.web_auth_base_url).rstrip("/")
        self._session: ws.Session | None = None
        self._mtime: float | None = None

    @property
    def off_reason(self) -> str | None:
        """Why the pool must not hand this account out whatever its session (None: it may)."""
        return None if self.enabled else DISABLED

    # ---- the file ---------------------------------------------------------------------------------

    def _stat_mtime(self) -> float | None:
        try:
            return self.path.stat().st_mtime
        except FileNotFoundError:
            return None

    def _load(self, *, force: bool = False) -> ws.Session:
        now = time.monotonic()
        if force or self._session is None or now - self._checked >= self.settings.file_check_s:
            self._checked = now
            mtime = self._stat_mtime()
            if mtime is None:
                self._session = None
                raise AccountUnavailable(f"{self.name}: no web session ({self.path.name} is missing); "
                                         f"{reimport_hint(self.name)}", needs_login=True)
            if self._session is None or mtime != self._mtime:
                if self._session is None:  # the first look (a start): a refresh killed before its rename?
                    self._look_for_stranded()
                try:
                    self._session = ws.load(self.path)
                except (ValueError, OSError) as e:
                    if self._session is None:
                        raise AccountUnavailable(f"{self.name}: {e}; {reimport_hint(self.name)}") from None
                self._mtime = mtime
                self._failure = None
        assert self._session is not None
        st = self.state.get(self.name)
        if st["needs_login"]:
            if self._mtime is not None and self._mtime > st["login_mtime"]:  # imported again
                self.state.set(self.name, needs_login=False, last_error=None)
            else:
                raise AccountUnavailable(f"{self.name}: the web session needs a fresh browser login; "
                                         f"{reimport_hint(self.name)}", needs_login=True)
        return self._session

    def _adopt(self, session: ws.Session) -> None:
        self._session = session
        self._mtime = self._stat_mtime()
        self._checked = time.monotonic()
        self._failure = None

    @staticmethod
    def _fresh(s: ws.Session) -> bool:
        left = s.expires_in()
        return left is None or left > REFRESH_BUFFER_S  # no `exp`: usable until the server says 401

    def _credential(self, s: ws.Session) -> Credential:
        headers = {"user-agent": s.user_agent} if s.user_agent else {}
        headers.update(s.bx)
        return Credential(self.name, WEB, self.base_url, s.token,
                          cookies=MappingProxyType(wc.for_host(s.cookies, wc.CHAT_HOST)),
                          headers=MappingProxyType(headers))

    def _expired(self) -> AccountUnavailable:
        return AccountUnavailable(f"{self.name}: the web session expired and has no refresh_token cookie; "
                                  f"{reimport_hint(self.name)}", needs_login=True)

    # ---- the interface ------------------------------------------------------------------------------

    def ready(self) -> Credential | None:
        if not self.enabled:
            raise AccountUnavailable(f"{self.name}: {DISABLED}")
        s = self._load()
        if self._fresh(s) and not (self._stranded and s.can_refresh):
            return self._credential(s)
        if not s.can_refresh:
            raise self._expired()
        if self._failure is not None and time.monotonic() < self._failed_until:
            raise AccountUnavailable(str(self._failure), transient=True)
        return None

    async def credential(self, *, force_refresh: bool = False, refused: str | None = None) -> Credential:
        if not self.enabled:
            raise AccountUnavailable(f"{self.name}: {DISABLED}")
        s = self._load()
        if not force_refresh:
            cred = self.ready()
            if cred is not None:
                return cred
        elif not self.refreshing and self._fresh(s):
            if refused is not None and refused != s.token:
                return self._credential(s)
            if time.monotonic() - self._refreshed_at < self.settings.refresh_backoff_s:
                return self._credential(s)
        if not s.can_refresh:
            raise self._expired() if not self._fresh(s) else AccountUnavailable(
                f"{self.name}: the token was refused and the session has no refresh_token cookie; "
                f"{reimport_hint(self.name)}", needs_login=True)
        token = s.token
        return self._credential(await self._single_flight(lambda: self._refresh(token, force_refresh)))

    async def _refresh(self, seen_token: str, force: bool) -> ws.Session:
        async with self._locked():
            await asyncio.to_thread(self._recover)
            mtime = await asyncio.to_thread(self._stat_mtime)
            try:
                current = await asyncio.to_thread(ws.load, self.path)
            except (ValueError, OSError) as e:
                raise self._failed(f"{self.name}: {e}") from None
            if current is None:
                raise AccountUnavailable(f"{self.name}: {self.path.name} disappeared; {reimport_hint(self.name)}",
                                         needs_login=True)
            if self._fresh(current) and (not force or current.token != seen_token):
                self._adopt(current)  # another process refreshed while we waited for the lock
                return current
            try:
                async with oauth.client(self.settings) as http:  # the gateway's proxy and trusted CAs
                    new = await ws.refresh(current, self.auth_base_url, http=http)
            except ws.Punished as e:
                self._park(current, str(e), punished=True)
                raise AccountUnavailable(f"{self.name}: {e}", needs_login=True) from None
            except ws.NeedsLogin as e:
                self.state.set(self.name, needs_login=True, login_mtime=mtime or 0.0, last_error=str(e))
                raise AccountUnavailable(f"{self.name}: {e}; {reimport_hint(self.name)}", needs_login=True) from None
            except ws.RefreshError as e:
                raise self._failed(f"{self.name}: {e}") from None
            try:  # a rotated refresh cookie goes to disk before anything else
                await asyncio.to_thread(ws.save, self.path, new)
            except OSError as e:
                self.state.set(self.name, last_error=f"could not save the refreshed session ({type(e).__name__})")
                self._session = new
            else:
                self._adopt(new)
            self._refreshed()
            return new

    def _park(self, session: ws.Session, why: str, *, punished: bool) -> None:
        """Mark the account needs_login (persisted); a punish is written to the session file too."""
        if punished:
            try:
                ws.save(self.path, replace(session, last_punish=time.time()))
            except OSError:
                pass
        self.state.set(self.name, needs_login=True, login_mtime=self._stat_mtime() or 0.0, last_error=why)
        self._session = None

    def record_punish(self, why: str = "an anti-bot page: this session needs a fresh browser login") -> None:
        """For the web upstream: Qwen answered with a punish page. The account is parked until re-imported."""
        try:
            session = ws.load(self.path)
        except (ValueError, OSError):
            session = None
        if session is not None:
            self._park(session, why, punished=True)

    def status(self) -> dict:
        out: dict = {"name": self.name, "kind": self.kind, "state": "ok", "base_url": self.base_url,
                     "expires_at": None, "last_error": None, "file": str(self.path), "enabled": self.enabled}
        try:
            s = self._load(force=True)
        except AccountUnavailable as e:
            state = "needs_login" if e.needs_login and self.path.exists() else (
                "missing" if not self.path.exists() else "error")
            out.update(state=state, session=state, last_error=str(e))
            if self._session is not None or state == "needs_login":
                try:
                    s2 = ws.load(self.path)
                except (ValueError, OSError):
                    s2 = None
                if s2 is not None:
                    out.update(self._describe(s2))
            return out
        out.update(self._describe(s))
        if self.refreshing:
            session = "refreshing"
        elif self._fresh(s):
            session = "ok"
        elif not s.can_refresh:
            session = "needs_login"
            out["last_error"] = str(self._expired())
        else:
            session = "error" if self._failure is not None else "expired"
        out["session"] = session
        out["state"] = session if session in ("needs_login", "error") or self.enabled else "disabled"
        if out["state"] == "disabled":
            out["last_error"] = DISABLED
        elif out["last_error"] is None:
            out["last_error"] = self.state.get(self.name)["last_error"]
        return out

    @staticmethod
    def _describe(s: ws.Session) -> dict:
        left = s.expires_in()
        return {"expires_at": iso(s.expires_at) if s.expires_at else None,
                "expires_in_s": None if left is None else int(left),
                "refresh": "possible" if s.can_refresh else "impossible (no refresh_token cookie)",
                "last_punish": iso(s.last_punish) if s.last_punish else None,
                "cookies": len(s.cookies), "bx_headers": sorted(s.bx), "user_agent": bool(s.user_agent)}
