"""A Qwen OAuth login: qwen-code's `oauth_creds.json` (the default account) or `oauth_creds_<name>.json`.

Refreshed like qwen-code: lazily (within 30 s of expiry, or forced after a 401), single-flight in this
process, under qwen-code's lock file across processes, re-reading the file first in case someone else
refreshed. What this adds to qwen-code's rules:

- the new tokens are written to the file (atomically) before anything else happens: a process killed
  right after the server rotated the refresh token still leaves the new one on disk; killed between writing
  the temp file and renaming it, the new login is in `<file>.tmp.<uuid>`: the next refresh under the lock
  (the first use after a start, when such a file is there) adopts it (stranded.py);
- one refresh per account per `refresh_backoff_s` window: a storm of 401s gets the token just refreshed;
- after a refresh failed for a network or server reason, none is tried for `refresh_retry_s`;
- a login whose refresh token is refused is marked needs_login (persisted) and never deleted or rewritten.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from ..accounts import OAUTH, AccountUnavailable, Credential
from ..settings.auth import AuthSettings
from . import oauth, stranded
from .credfile import REFRESH_ORDER, CredentialFileError, is_fresh, read_creds, write_creds
from .endpoints import api_base_from_resource_url
from .names import iso, login_hint
from .refreshing import RefreshedFileAccount
from .state import AccountState

NEEDS_LOGIN_MESSAGE = "Refresh token expired or invalid; run `{hint}`"


class _FileSig:
    """What tells us a credential file changed: mtime (qwen-code's test), plus inode and size."""

    __slots__ = ("mtime", "ino", "size")

    def __init__(self, st: os.stat_result) -> None:
        self.mtime, self.ino, self.size = st.st_mtime, st.st_ino, st.st_size

    def __eq__(self, other) -> bool:
        return isinstance(other, _FileSig) and (self.mtime, self.ino, self.size) == (other.mtime, other.ino,
                                                                                     other.size)


class OAuthAccount(RefreshedFileAccount[dict]):
    kind = OAUTH
    stranded_kind = stranded.OAUTH_LOGIN

    def __init__(self, name: str, path: Path, settings: AuthSettings, state: AccountState) -> None:
        super().__init__(name, path, settings, state)
        self.file_check_s = settings.file_check_s
        self._creds: dict | None = None
        self._sig: _FileSig | None = None
        self._made: tuple[dict, Credential] | None = None  # the last login and its credential (immutable)

    @property
    def login_hint(self) -> str:
        return login_hint(self.name)

    # ---- the file ---------------------------------------------------------------------------------

    def _stat(self) -> _FileSig | None:
        try:
            return _FileSig(self.path.stat())
        except FileNotFoundError:
            return None

    def _load(self, *, force: bool = False) -> dict:
        """The login, re-read when the file changed (stat at most every file_check_s). Raises
        AccountUnavailable when there is none or it needs a new login. Blocking but tiny: one stat."""
        now = time.monotonic()
        if force or self._creds is None or now - self._checked >= self.file_check_s:
            self._checked = now
            sig = self._stat()
            if sig is None:
                self._creds, self._sig = None, None
                raise AccountUnavailable(f"{self.name}: no Qwen login ({self.path.name} is missing); run "
                                         f"`{self.login_hint}`", needs_login=True)
            if self._creds is None or sig != self._sig:
                if self._creds is None:  # the first look (a start): a refresh killed before its rename?
                    self._look_for_stranded()
                try:
                    creds = read_creds(self.path)
                except CredentialFileError as e:
                    if self._creds is None:
                        raise AccountUnavailable(f"{self.name}: {e}; run `{self.login_hint}`") from e
                    creds = None  # a half-written file from another writer: keep what we had, look again
                if creds is not None:
                    self._creds, self._sig = creds, sig
                    self._failure = None
            if self._creds is None:
                raise AccountUnavailable(f"{self.name}: no Qwen login; run `{self.login_hint}`", needs_login=True)
        st = self.state.get(self.name)
        if st["needs_login"]:
            if self._sig is not None and self._sig.mtime > st["login_mtime"]:  # logged in again (here or qwen-code)
                self.state.set(self.name, needs_login=False, last_error=None)
            else:
                raise AccountUnavailable(f"{self.name}: {NEEDS_LOGIN_MESSAGE.format(hint=self.login_hint)}",
                                         needs_login=True)
        return self._creds

    def _credential(self, creds: dict) -> Credential:
        made = self._made
        if made is not None and made[0] is creds:  # the same login (a new one is a new dict): the same credential
            return made[1]
        base = api_base_from_resource_url(creds.get("resource_url"), self.settings.default_api_base)
        cred = Credential(self.name, OAUTH, base, creds["access_token"])
        self._made = (creds, cred)
        return cred

    def _adopt(self, creds: dict) -> None:
        self._creds = creds
        self._sig = self._stat()
        self._checked = time.monotonic()
        self._failure = None

    # ---- the interface ------------------------------------------------------------------------------

    def ready(self) -> Credential | None:
        creds = self._load()
        if is_fresh(creds) and not self._stranded:
            return self._credential(creds)
        if self._failure is not None and time.monotonic() < self._failed_until:
            raise AccountUnavailable(str(self._failure), transient=True)  # do not hammer a failing OAuth server
        return None

    async def credential(self, *, force_refresh: bool = False, refused: str | None = None) -> Credential:
        """A fresh credential. `force_refresh` (after a 401): refresh unless the token was already replaced
        (`refused` differs from the current one) or we refreshed less than refresh_backoff_s ago."""
        creds = self._load()
        if not force_refresh:
            if is_fresh(creds) and not self._stranded:
                return self._credential(creds)
            if self._failure is not None and time.monotonic() < self._failed_until:
                raise AccountUnavailable(str(self._failure), transient=True)
        elif not self.refreshing and is_fresh(creds):
            if refused is not None and refused != creds["access_token"]:
                return self._credential(creds)  # someone already replaced the token that failed
            if time.monotonic() - self._refreshed_at < self.settings.refresh_backoff_s:
                return self._credential(creds)  # one refresh per window: a 401 storm gets this token
        token = creds["access_token"]
        return self._credential(await self._single_flight(lambda: self._refresh(token, force_refresh)))

    async def _refresh(self, seen_token: str, force: bool) -> dict:
        async with self._locked():
            await asyncio.to_thread(self._recover)
            sig = await asyncio.to_thread(self._stat)
            try:
                current = await asyncio.to_thread(read_creds, self.path)
            except CredentialFileError as e:
                raise self._failed(f"{self.name}: {e}; run `{self.login_hint}`") from e
            if current is None:
                raise AccountUnavailable(f"{self.name}: the login file {self.path.name} disappeared; run "
                                         f"`{self.login_hint}`", needs_login=True)
            # Another process (qwen-code, another gateway) may have refreshed while we waited for the lock.
            if is_fresh(current) and (not force or current["access_token"] != seen_token):
                self._adopt(current)
                return current
            # Another machine's gateway (shared state) may have: its login, written here atomically (0600).
            published = await self.state.published(self.name)
            if published is not None and is_fresh(published) and published["access_token"] != seen_token \
                    and (published.get("expiry_date") or 0) > (current.get("expiry_date") or 0):
                await asyncio.to_thread(write_creds, self.path, published, REFRESH_ORDER)
                self._adopt(published)
                return published
            try:
                data = await oauth.refresh(self.settings, current["refresh_token"])
            except oauth.RefreshRejected as e:
                # Never delete or rewrite the file (qwen-code would delete it): mark, persist, tell.
                self.state.set(self.name, needs_login=True, login_mtime=sig.mtime if sig else 0.0,
                               last_error=str(e))
                raise AccountUnavailable(f"{self.name}: {NEEDS_LOGIN_MESSAGE.format(hint=self.login_hint)}",
                                         needs_login=True) from e
            except oauth.OAuthError as e:
                raise self._failed(f"{self.name}: {e}") from e
            # The server may have rotated the refresh token: the new one goes to disk before anything else.
            new = oauth.creds_from_token(data, previous=current)
            try:
                await asyncio.to_thread(write_creds, self.path, new, REFRESH_ORDER)
            except OSError as e:  # keep it in memory at least
                self._creds = new
                self._refreshed_at = time.monotonic()
                self.state.set(self.name, last_error=f"could not save the refreshed login ({type(e).__name__})")
                return new
            self._adopt(new)
            self._refreshed()
            await self.state.publish(self.name, new)
            return new

    def status(self) -> dict:
        out = {"name": self.name, "kind": self.kind, "state": "ok", "base_url": None, "expires_at": None,
               "last_error": None, "file": str(self.path)}
        try:
            creds = self._load(force=True)
        except AccountUnavailable as e:
            if e.needs_login and self._sig is not None:
                state = "needs_login"
            elif self.path.exists():
                state = "error"
            else:
                state = "missing"
            last = self.state.get(self.name)["last_error"] if state == "needs_login" else None
            out.update(state=state, last_error=str(e) + (f" ({last})" if last else ""))
            if self._creds is not None:
                out.update(self._describe(self._creds))
            return out
        out.update(self._describe(creds))
        last = self.state.get(self.name)["last_error"]
        if self.refreshing:
            state = "refreshing"
        elif is_fresh(creds):
            state = "ok"
        elif self._failure is not None:
            state = "error"
        else:
            state = "expired"  # refreshed at the next request
        out.update(state=state, last_error=last)
        return out

    def _describe(self, creds: dict) -> dict:
        return {"base_url": api_base_from_resource_url(creds.get("resource_url"), self.settings.default_api_base),
                "expires_at": iso(creds["expiry_date"] / 1000)}
