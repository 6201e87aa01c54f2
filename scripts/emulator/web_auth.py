"""Who may use the web API, and how it says no (qwen-web-protocol.md §1.2, §1.3, §1.12, §1.13): the HTTP-200
error envelopes, the anti-bot punish replies, the cookie jar and header rules, the request log's redaction."""

from __future__ import annotations

import hashlib
import time

from .faults import dumps
from .web_state import ANTI_BOT, WebState

# The true status of an HTTP-200 envelope, in `x-actual-status-code` (CNDOC §0: 200/400/401/404 seen;
# RateLimited's 429 is assumed).
ACTUAL = {"Bad_Request": 400, "Unauthorized": 401, "unauthorized": 401, "Not_Found": 404, "RateLimited": 429}
RATE_LIMITED = "You've reached the upper limit for today's usage."
IN_PROGRESS = "The chat is in progress!"
BAD_HEADER = "Invalid request header"  # the auth domain's words (§1.2); for writes the text is assumed
UNAUTHORIZED = "401 Unauthorized"  # the doc quotes "401 …": the rest is assumed
NOT_FOUND = "CHAT_NOT_FOUND"
BX = ("bx-ua", "bx-umidtoken", "bx-v")
# The request log never shows these (as the Anthropic base's Authorization and x-api-key); cookies keep their
# names, so a test still sees which cookies arrived.
SECRET_HEADERS = ("authorization", "bx-ua", "bx-umidtoken")
PUNISH_URL = "https://chat.qwen.ai/_____tmd_____/punish?x5secdata=xd{tag}&x5step={step}"
# The WAF's body-size rule (§1.14, CNDOC U-17): a message of about 50,000 (Chinese) characters passed, one of
# 62,000 or more set off x5sec at once, whatever the exit IP. Whether the WAF counts characters or bytes is not
# known: both are enforced, at the figure seen failing (62,000 Chinese characters are 186,000 bytes of UTF-8).
WAF_MAX_CHARS = 62_000
WAF_MAX_BYTES = 3 * WAF_MAX_CHARS


def envelope(code: str, details: str, **more) -> dict:
    return {"success": False, "data": {"code": code, "details": details, **more}}


def send_envelope(h, code: str, details: str, **more) -> None:
    """An app error as the web API answers it: HTTP 200, the real status in a header (§1.12)."""
    h.send_json(200, envelope(code, details, **more), {"x-actual-status-code": str(ACTUAL.get(code, 200))})


def unauthorized(h, shape: str = "envelope") -> None:
    """An expired or dead token: the envelope (default), its lower-case variant, or a plain 401 (§1.12)."""
    if shape == "http401":
        h.send_json(401, envelope("Unauthorized", UNAUTHORIZED))
    else:
        send_envelope(h, "unauthorized" if shape == "lower" else "Unauthorized", UNAUTHORIZED)


def _slider_page(tag: str) -> bytes:
    """The 16 KB aliyun_waf slider page served since 2026-09-30 (§1.12; its markup is assumed, its markers are
    those the doc names: aliyun_waf, the baxia dialog and the slider handle nc_1_n1z)."""
    head = (f'<!doctype html><html><head><meta charset="utf-8"><title>aliyun_waf_aa</title>'
            f'<script>window._config_={{"action":"captcha","bxstep":"slider","x5secdata":"xd{tag}"}};</script>'
            '</head><body><div id="baxia-dialog-content"><div id="nc_1_wrapper"><span id="nc_1_n1z" '
            'class="nc_iconfont btn_slide"></span></div></div><script>')
    tail = "</script></body></html>"
    seed = hashlib.sha256(tag.encode()).hexdigest()
    filler = ("/*" + seed * 260)[: 16 * 1024 - len(head) - len(tail) - 2] + "*/"
    return (head + filler + tail).encode()


def punish(h, style: str) -> None:
    """The anti-bot reply (§1.12): always HTTP 200."""
    tag = hashlib.sha256(str(time.time_ns()).encode()).hexdigest()[:32]
    if style == "json":
        body = {"ret": ["FAIL_SYS_USER_VALIDATE", "RGV587_ERROR::SM::哎哟喂,被挤爆啦,请稍后重试"],
                "data": {"url": PUNISH_URL.format(tag=tag, step=1)}}
        return h.send_bytes(200, dumps(body), "application/json")
    if style == "html":
        page = f'<script>window.location.replace("{PUNISH_URL.format(tag=tag, step=2)}");</script>'
        return h.send_bytes(200, page.encode(), "text/html; charset=utf-8")
    h.send_bytes(200, _slider_page(tag), "text/html; charset=utf-8")


def cookies(h) -> dict[str, str]:
    jar: dict[str, str] = {}
    for header in h.headers.get_all("Cookie") or ():
        for part in header.split(";"):
            name, eq, value = part.strip().partition("=")
            if eq and name:
                jar[name] = value
    return jar


def too_big(raw: bytes, body: object) -> bool:
    """Over the WAF's body-size rule: a message node of WAF_MAX_CHARS characters or more, or a body of
    WAF_MAX_BYTES bytes or more."""
    if len(raw) >= WAF_MAX_BYTES:
        return True
    nodes = body.get("messages") if isinstance(body, dict) else None
    return any(len(_text(m.get("content"))) >= WAF_MAX_CHARS for m in nodes or () if isinstance(m, dict))


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else ()
    return "".join(str(p.get("text") or "") for p in parts if isinstance(p, dict))


def waf_passes(h, w: WebState, s: dict | None, jar: dict, size_ok: bool = True) -> bool:
    """The WAF in front of the writes: a session it punished stays punished for a while (§1.13: "punished
    calls raise the risk score"); Bearer with no cookie jar (CNDOC §2.6), a jar without the anti-bot cookies
    (QS: a bare acw_tc + x-ap jar) or with another session's (CNDOC's pair gate), a body over the size rule
    (§1.14), and, when `require_bx`, a write without the bx-* headers, are punished."""
    if s and w.punished(s):
        return False
    ok = size_ok and all(k in jar for k in ANTI_BOT) and \
        (not s or all(jar.get(k) == v for k, v in s["anti_bot"].items()))
    if ok and w.switches["require_bx"]:
        ok = all(h.headers.get(k) for k in BX)
    if not ok and s:
        w.punish(s)
    return ok


def admit(h, w: WebState, *, write: bool = True, raw: bytes = b"", body: object = None) -> dict | None:
    """The live session behind a Bearer + cookie request (completions, stop, a chat's history); None once the
    request is answered: the punish page (`raw`, `body`: what the size rule measures), `Bad_Request` for a
    write without `version` (CNDOC §2.3), or `Unauthorized` for a token that is unknown, expired, replaced by
    a refresh, or revoked."""
    jar = cookies(h)
    token = h.bearer() or jar.get("token", "")
    s = w.session_of(token) if token else None
    with w.lock:
        style = w.switches["punish_style"]
        passes = waf_passes(h, w, s, jar, not too_big(raw, body))
    if not passes:
        punish(h, style)
        return None
    if write and not h.headers.get("version"):
        send_envelope(h, "Bad_Request", BAD_HEADER)
        return None
    live = w.live(token)
    if live is None:
        unauthorized(h)
    return live


def session_id(h, w: WebState) -> str | None:
    """Which session's credentials a request carries (for the log and for faults aimed at one session)."""
    jar = cookies(h)
    s = w.session_of(h.bearer() or jar.get("token", ""))
    if s is None and jar.get("refresh_token"):
        with w.lock:
            sid = w.by_refresh.get(jar["refresh_token"])
            s = w.sessions.get(sid) if sid else None
    return s["session"] if s else None


def record(h, w: WebState, raw: bytes, parsed) -> None:
    """Logs a web request with its credentials redacted: cookie values, the Bearer token, the bx-* tokens.
    `web_session` names the session they belong to."""
    headers: dict[str, str] = {}
    for k, v in h.headers.items():
        k = k.lower()
        headers[k] = f"{headers[k]}, {v}" if k in headers else v
    headers.update({k: "<redacted>" for k in SECRET_HEADERS if k in headers})
    if "cookie" in headers:
        headers["cookie"] = "; ".join(f"{name}=<redacted>" for name in cookies(h))
    h.state.log({"method": h.command, "path": h.path, "headers": headers, "body": parsed, "raw_body_len": len(raw),
                 "time": time.time(), "web_session": session_id(h, w)})
