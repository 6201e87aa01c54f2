"""The web API's memory (qwen-web-protocol.md): browser sessions, chats and their message trees, switches, queued
faults, counters. It hangs off the emulator's `State` (`of(state)`) and shares its lock."""

from __future__ import annotations

import base64
import copy
import json
import secrets
import threading
import time
import uuid

from . import faults

ACCESS_TTL = 900  # gen C access tokens live 15 min (§1.2)
REFRESH_TTL = 30 * 86400  # the refresh_token cookie: 30 days
# The anti-bot part of a browser jar (§1.3, QS "Experiment 2"): a write must carry all of them, with the
# values of the session that minted its token (CNDOC's "pair gate").
ANTI_BOT = ("ssxmod_itna", "ssxmod_itna2", "acw_tc", "x-ap", "cna", "tfstk", "isg")

DEFAULT_SWITCHES = {
    "reply": None,  # fixed answer text; default "Echo: <the user message>"
    "tool_call": None,  # {"name", "arguments"}: the answer is one <tool_call>{…}</tool_call> block
    "tool_call_times": 0,  # > 0: only that many answers call (then tool_call is cleared); 0: every answer
    "chunk_count": 0,  # answer pieces; 0: one per word (a tool-call block: 7-character pieces)
    "gap_ms": 0,  # pause between frames
    "models": None,  # catalogue ids (default: web_models.CATALOGUE's)
    "punish_style": "waf",  # waf (16 KB slider page), html (window.location.replace), json (FAIL_SYS_USER_VALIDATE)
    "punish_seconds": 900,  # a session that set off the WAF stays punished this long (0: not at all)
    "require_bx": False,  # writes need bx-ua, bx-umidtoken, bx-v (disputed in §1.3: off by default)
    "daily_limit": 0,  # completions per session per UTC day, then RateLimited (0: off)
    "access_ttl": ACCESS_TTL,  # lifetime of refreshed access tokens
    "rotate_refresh_token": True,  # QS: rotated on use; CNDOC: not rotated
    "refresh_shape": "pair",  # pair {access_token, refresh_token}, token {token}, expires {access_token, expires_at}
}
FAULTS = ("rate_limited", "unauthorized", "punish", "in_progress", "bad_request", "break", "stream_error", "hold")
STREAM_FAULTS = ("break", "stream_error", "hold")


def _b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).rstrip(b"=").decode()


def jwt(user_id: str, exp: int) -> str:
    """An access token shaped like gen C's (a JWT with `type: access_token`); unsigned in substance."""
    claims = {"id": user_id, "type": "access_token", "iat": int(time.time()), "exp": exp,
              "jti": secrets.token_hex(8)}
    return f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(claims)}.{secrets.token_urlsafe(32)}"


class WebState:
    def __init__(self, lock: threading.RLock) -> None:
        self.lock = lock
        self.sessions: dict[str, dict] = {}  # session id -> session
        self.by_access: dict[str, str] = {}  # access token -> session id (live or dead: dead ones are marked)
        self.by_refresh: dict[str, str] = {}  # refresh token -> session id
        self.released = threading.Event()
        self.reset(sessions=True)

    def reset(self, *, sessions: bool = False) -> None:
        with self.lock:
            self.switches = copy.deepcopy(DEFAULT_SWITCHES)
            self.faults: list[dict] = []
            self.chats: dict[str, dict] = {}
            self.stats = {"chats_created": 0, "completions": 0, "refresh_calls": 0, "punished": 0,
                          "in_progress": 0}
            self.released.set()  # a held generation goes on
            self.released = threading.Event()
            if sessions:
                self.sessions.clear()
                self.by_access.clear()
                self.by_refresh.clear()

    # ---- sessions ----------------------------------------------------------------------------------

    def mint(self, expires_in: float = ACCESS_TTL, extra_cookies: dict | None = None) -> dict:
        with self.lock:
            sid = f"ws-{secrets.token_hex(4)}"
            user = str(uuid.uuid4())
            s = {"session": sid, "user_id": user, "state": "ok", "punished_until": 0.0, "used": {}}
            self.sessions[sid] = s
            jar = {"token": self._new_access(s, expires_in),
                   "refresh_token": self._new_refresh(s),
                   "ssxmod_itna": secrets.token_urlsafe(90), "ssxmod_itna2": secrets.token_urlsafe(120),
                   "acw_tc": secrets.token_hex(32), "x-ap": "cn-hongkong", "cna": secrets.token_urlsafe(18),
                   "tfstk": secrets.token_urlsafe(60), "isg": secrets.token_urlsafe(45),
                   **(extra_cookies or {})}
            s["anti_bot"] = {k: jar[k] for k in ANTI_BOT if k in jar}
            return {"session": sid, "access_token": s["access"], "refresh_token": s["refresh"], "cookies": jar,
                    "expires_in": expires_in, "expires_at": s["expires_at"]}

    def _new_access(self, s: dict, expires_in: float) -> str:
        s["expires_at"] = int(time.time() + expires_in)
        s["access"] = jwt(s["user_id"], s["expires_at"])
        self.by_access[s["access"]] = s["session"]
        return s["access"]

    def _new_refresh(self, s: dict) -> str:
        s["refresh"] = secrets.token_urlsafe(48)
        s["refresh_expires_at"] = time.time() + REFRESH_TTL
        self.by_refresh[s["refresh"]] = s["session"]
        return s["refresh"]

    def session_of(self, access: str) -> dict | None:
        """The session an access token was minted for, whether or not it still works."""
        with self.lock:
            sid = self.by_access.get(access)
            return self.sessions.get(sid) if sid else None

    def live(self, access: str) -> dict | None:
        """The session, if this is its current, unexpired access token and it is not revoked."""
        with self.lock:
            s = self.session_of(access)
            if s and s["state"] != "revoked" and s["access"] == access and s["expires_at"] > time.time():
                return s
            return None

    def refresh(self, refresh_token: str) -> tuple[dict, str] | None:
        """A new access token for the session this refresh token belongs to (the old one dies); rotates the
        refresh token unless the switch says not to. None if the refresh token is unknown, dead or revoked."""
        with self.lock:
            s = self.sessions.get(self.by_refresh.get(refresh_token, ""))
            if not s or s["state"] == "revoked" or s["refresh"] != refresh_token or \
                    s["refresh_expires_at"] < time.time():
                return None
            self._new_access(s, self.switches["access_ttl"])
            if self.switches["rotate_refresh_token"]:
                self._new_refresh(s)
            return s, s["refresh"]

    def punished(self, s: dict) -> bool:
        with self.lock:
            return s["state"] == "punished" or s["punished_until"] > time.time()

    def punish(self, s: dict, seconds: float | None = None) -> None:
        with self.lock:
            seconds = self.switches["punish_seconds"] if seconds is None else seconds
            s["punished_until"] = max(s["punished_until"], time.time() + float(seconds))
            self.stats["punished"] += 1

    def over_daily_limit(self, s: dict) -> int:
        """Counts a completion; the hours until the UTC day ends when the daily limit refuses it, else 0."""
        with self.lock:
            now = time.time()
            today = time.strftime("%Y-%m-%d", time.gmtime(now))
            used = s["used"].get(today, 0)
            limit = self.switches["daily_limit"]
            if limit and used >= limit:
                return max(1, -int(-(86400 - now % 86400) // 3600))
            s["used"] = {today: used + 1}
            return 0

    # ---- faults --------------------------------------------------------------------------------------

    def take_fault(self, path: str, session: str | None, kinds: tuple[str, ...] = FAULTS) -> dict | None:
        """The first queued fault that matches (by default faults aim at completions; `path` aims elsewhere)."""
        with self.lock:
            return faults.take(self.faults, lambda f: f["kind"] in kinds and f["path"] in path
                               and (not f.get("session") or f["session"] == session))

    def queue_fault(self, body: dict) -> str | None:
        if body.get("kind") not in FAULTS:
            return f"unknown web fault kind {body.get('kind')!r}; known: {list(FAULTS)}"
        try:
            count = max(1, int(body.get("count", 1)))
        except (TypeError, ValueError):
            return "count must be an integer"
        with self.lock:
            self.faults.append({**body, "count": count, "path": str(body.get("path") or "/api/v2/chat/completions")})
        return None


def of(state) -> WebState:
    """The web API's state on the emulator's `State` (created on first use, sharing its lock)."""
    with state.lock:
        web = getattr(state, "web", None)
        if web is None:
            web = state.web = WebState(state.lock)
        return web
