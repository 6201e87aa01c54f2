"""A Qwen Chat web session on disk, and its refresh through auth.qwen.ai.

File: `<state dir>/web/<name>.json`, mode 0600 in a 0700 folder, written atomically (credfile.atomic_write:
temp file, fsync, rename), never deleted by the gateway:

    {"version": 1, "token": "<JWT>", "cookies": [{"name", "value", "domain", "path", "expires"}],
     "user_agent": "Mozilla/5.0 …", "bx": {"bx-ua": …, "bx-umidtoken": …, "bx-v": …},
     "expires_at": 1790000000, "imported_at": …, "refreshed_at": …, "last_punish": null}

Refresh (docs: qwen-web-protocol.md §1.2, generation C): `GET {auth base}/api/v2/auths/refresh` with the
cookie jar (the HttpOnly `refresh_token` cookie is what counts) and the auth domain's header set (`source`,
`version`, `origin`/`referer`/`x-request-origin`, `sec-fetch-*`) and the browser's User-Agent. No
Authorization: the access token is the thing that expired. Answers seen: `data{access_token,
refresh_token}`, `data{token}`, `data{access_token, expires_at}` (and a rotated `refresh_token` by
Set-Cookie). Whether refresh_token rotates is disputed, so the latest value received is always stored.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from . import web_cookies as wc
from .credfile import atomic_write
from .stranded import FileKind
from .oauth_replies import redact

if TYPE_CHECKING:  # imported at the first refresh (oauth.py: a gateway without such accounts never needs it)
    import httpx

BX_HEADERS = ("bx-ua", "bx-umidtoken", "bx-v")
AUTH_VERSION = "0.3.12"  # the SPA build the auth domain expects (CNDOC, ELD)
CHAT_ORIGIN = "https://chat.qwen.ai"
REFRESH_PATH = "/api/v2/auths/refresh"
TIMEOUT_S, CONNECT_TIMEOUT_S = 20.0, 10.0
# Markers of Aliyun's anti-bot answers (punish page, x5sec, WAF slider): never retried in a loop.
PUNISH_MARKERS = ("_____tmd_____/punish", "FAIL_SYS_USER_VALIDATE", "RGV587_ERROR", "x5secdata", "aliyun_waf")


@dataclass(frozen=True)
class Session:
    token: str = field(repr=False)
    cookies: tuple[dict, ...] = field(default=(), repr=False)
    user_agent: str | None = None
    bx: dict = field(default_factory=dict, repr=False)
    expires_at: float | None = None  # epoch seconds (the JWT's exp, or what the refresh said)
    imported_at: float | None = None
    refreshed_at: float | None = None
    last_punish: float | None = None

    @property
    def refresh_token(self) -> str | None:
        return wc.find(self.cookies, wc.REFRESH_COOKIE)

    @property
    def can_refresh(self) -> bool:
        return bool(self.refresh_token)

    def expires_in(self, now: float | None = None) -> float | None:
        return None if self.expires_at is None else self.expires_at - (time.time() if now is None else now)

    def secrets(self) -> tuple[str, ...]:
        """Every value to keep out of text shown to anyone (for redact())."""
        return (self.token, *(c["value"] for c in self.cookies), *self.bx.values())

    def to_json(self) -> dict:
        return {"version": 1, **asdict(self), "cookies": list(self.cookies)}

    @classmethod
    def from_json(cls, data: object) -> "Session":
        if not isinstance(data, dict) or not isinstance(data.get("token"), str) or not data["token"]:
            raise ValueError("not a web session (no token)")
        cookies = data.get("cookies") or []
        if not isinstance(cookies, list) or not all(isinstance(c, dict) and isinstance(c.get("name"), str)
                                                     and isinstance(c.get("value"), str) for c in cookies):
            raise ValueError("not a web session (bad cookie list)")
        bx = {k: v for k, v in (data.get("bx") or {}).items() if k in BX_HEADERS and isinstance(v, str)}
        nums = {k: float(data[k]) if isinstance(data.get(k), (int, float)) else None
                for k in ("expires_at", "imported_at", "refreshed_at", "last_punish")}
        ua = data.get("user_agent") if isinstance(data.get("user_agent"), str) else None
        return cls(token=data["token"], cookies=tuple(wc.make_cookie(c["name"], c["value"], str(c.get("domain") or ""),
                                                                  str(c.get("path") or "/"), c.get("expires") or 0)
                                                       for c in cookies),
                   user_agent=ua, bx=bx, **nums)


def new_session(token: str, cookies: list[dict], *, user_agent: str | None, bx: dict[str, str],
                now: float | None = None) -> Session:
    now = time.time() if now is None else now
    return Session(token=token, cookies=tuple(cookies), user_agent=user_agent,
                   bx={k: v for k, v in bx.items() if v}, expires_at=wc.jwt_exp(token), imported_at=now)


def save(path: Path, session: Session) -> None:
    atomic_write(path, json.dumps(session.to_json(), indent=2, ensure_ascii=False) + "\n")


def load(path: Path) -> Session | None:
    """The session in `path`, None when absent; ValueError (naming the file, never its content) if broken."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return Session.from_json(json.loads(raw))
    except ValueError as e:
        raise ValueError(f"{path.name} is not a valid web session ({str(e).split(' (')[0]})") from None


def _same_user(a: Session, b: Session) -> bool:
    """Two sessions of one Qwen Chat user (the JWT's `id` claim; none: not known to be the same)."""
    user = (wc.jwt_claims(a.token) or {}).get("id")
    return user is not None and user == (wc.jwt_claims(b.token) or {}).get("id")


# A session a refresh killed before its rename left in `<name>.json.tmp.<uuid>` (stranded.py): newer when its
# token expires later.
STRANDED = FileKind(load, _same_user, lambda s: float(s.expires_at or 0))


# ---- refresh ----------------------------------------------------------------------------------------


class RefreshError(Exception):
    """The refresh did not give a token; the message is redacted (shown to users)."""


class NeedsLogin(RefreshError):
    """401 (or an `Unauthorized` envelope): the refresh cookie is dead; the user imports a new session."""


class Punished(RefreshError):
    """An anti-bot page instead of an answer: the session needs a fresh browser login; never retried."""


def refresh_headers(session: Session) -> dict[str, str]:
    jar = wc.for_host(session.cookies, wc.AUTH_HOST)
    headers = {"accept": "application/json", "source": "h5", "version": AUTH_VERSION, "origin": CHAT_ORIGIN,
               "referer": CHAT_ORIGIN + "/", "x-request-origin": CHAT_ORIGIN, "sec-fetch-site": "same-site",
               "sec-fetch-mode": "cors", "sec-fetch-dest": "empty", "x-request-id": str(uuid.uuid4())}
    if session.user_agent:
        headers["user-agent"] = session.user_agent
    if jar:
        headers["cookie"] = wc.header(jar)
    return headers


def set_cookies(lines: list[str], now: float) -> list[dict]:
    """Set-Cookie lines as cookies (qwen.ai only; default domain auth.qwen.ai); Max-Age<=0 → expires=-1."""
    out = []
    for line in lines:
        first, *attrs = line.split(";")
        name, sep, value = first.strip().partition("=")
        if not sep or not name:
            continue
        domain, path, expires = wc.AUTH_HOST, "/", 0.0
        for a in attrs:
            k, _, v = a.strip().partition("=")
            k = k.lower()
            if k == "domain" and v:
                domain = v.strip()
            elif k == "path" and v:
                path = v.strip()
            elif k == "max-age":
                try:
                    expires = now + float(v) if float(v) > 0 else -1
                except ValueError:
                    pass
        if wc.is_qwen_domain(domain):
            c = wc.make_cookie(name, value.strip().strip('"'), domain, path)
            c["expires"] = expires if expires else 0
            out.append(c)
    return out


def _when(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return value / 1000 if value > 1e12 else float(value)  # milliseconds or seconds
    return None


def apply_refresh(session: Session, data: object, cookies: list[dict], *, now: float | None = None) -> Session:
    """The session after a refresh answered `data` (parsed JSON) and set `cookies`. Raises RefreshError
    when the answer holds no token, NeedsLogin on an `Unauthorized` envelope."""
    now = time.time() if now is None else now
    body: dict = data if isinstance(data, dict) else {}
    inner: dict = body["data"] if isinstance(body.get("data"), dict) else body
    if body.get("success") is False:
        code = str(inner.get("code") or "")
        if code.lower() == "unauthorized":
            raise NeedsLogin("the refresh was refused (Unauthorized)")
        raise RefreshError(f"the refresh was refused ({redact(code, limit=60) or 'no code'})")
    token = inner.get("access_token") or inner.get("token")
    if not isinstance(token, str) or not token:
        raise RefreshError("the refresh answer held no token")
    jar = {(c["name"], c["domain"].lstrip("."), c["path"]): c for c in session.cookies}
    rotated = inner.get("refresh_token")
    if isinstance(rotated, str) and rotated:  # in the body: replaces the cookie wherever it was set
        keys = [k for k in jar if k[0] == wc.REFRESH_COOKIE] or [(wc.REFRESH_COOKIE, wc.QWEN_DOMAIN, "/")]
        for k in keys:
            jar[k] = {**jar.get(k, wc.make_cookie(wc.REFRESH_COOKIE, "", "." + wc.QWEN_DOMAIN)), "value": rotated}
    for c in cookies:
        key = (c["name"], c["domain"].lstrip("."), c["path"])
        if c["expires"] == -1:
            jar.pop(key, None)
        else:
            jar[key] = c
    for k, c in jar.items():  # the SPA's `token` cookie carries the access token: keep the pair together
        if k[0] == wc.TOKEN_COOKIE:
            jar[k] = {**c, "value": token}
    expires = _when(inner.get("expires_at")) or wc.jwt_exp(token)
    if expires is None and isinstance(inner.get("expires_in"), (int, float)):
        expires = now + float(inner["expires_in"])
    return replace(session, token=token, cookies=tuple(jar.values()), expires_at=expires, refreshed_at=now)


def punished(text: str) -> bool:
    return any(m in text for m in PUNISH_MARKERS)


async def refresh(session: Session, auth_base: str, *, http: httpx.AsyncClient | None = None) -> Session:
    """One refresh of `session` against `auth_base` (https://auth.qwen.ai, or an emulator). Raises
    NeedsLogin, Punished or RefreshError (network, 5xx, an answer without a token); messages redacted."""
    if not session.can_refresh:
        raise NeedsLogin("the session has no refresh_token cookie")
    import httpx

    url = auth_base.rstrip("/") + REFRESH_PATH
    own = http is None
    client = http or httpx.AsyncClient(timeout=httpx.Timeout(TIMEOUT_S, connect=CONNECT_TIMEOUT_S), trust_env=False)
    try:
        r = await client.get(url, headers=refresh_headers(session))
    except httpx.HTTPError as e:
        raise RefreshError(f"the refresh server could not be reached ({type(e).__name__})") from None
    finally:
        if own:
            await client.aclose()
    text = r.text
    if punished(text):
        raise Punished("auth.qwen.ai answered with an anti-bot page: this session needs a fresh browser login")
    if r.status_code in (401, 403):
        raise NeedsLogin(f"the refresh was refused (HTTP {r.status_code})")
    if r.status_code != 200:
        raise RefreshError(f"the refresh failed (HTTP {r.status_code}: "
                           f"{redact(text, secrets=session.secrets(), limit=120)})")
    try:
        data = r.json()
    except ValueError:
        raise RefreshError("the refresh answer was not JSON") from None
    return apply_refresh(session, data, set_cookies(r.headers.get_list("set-cookie"), time.time()))
