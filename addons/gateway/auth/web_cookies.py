"""A browser session's cookie jar, from what a user can export: pure functions, no I/O.

Three inputs, the ones users of "Qwen Proxy Backend"-style tools copy from their browser:

- a Netscape `cookies.txt` (curl, wget, the "Get cookies.txt" extensions): 7 tab-separated fields per
  line, `#HttpOnly_` before the domain of an HttpOnly cookie (that line is a cookie, not a comment);
- a Playwright `storageState` JSON (`{"cookies": [...], "origins": [{"origin", "localStorage": [...]}]}`),
  or a bare list of cookie objects as cookie-editor extensions export (`expirationDate` instead of
  `expires`); the SPA's `localStorage.token` of chat.qwen.ai is read as the token;
- a pasted `Cookie` header (`a=1; b=2`, with or without the `Cookie:` prefix): no domains, so every
  cookie is taken as set for `.qwen.ai`.

Only cookies for qwen.ai and its subdomains are kept (a browser export holds every site the user visits);
expired ones are dropped. A cookie is a dict {name, value, domain, path, expires} (expires: epoch seconds,
0 for a session cookie). The token a session carries is a JWT whose `exp` is read for "expires in",
never verified: the server is the judge.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Iterable

QWEN_DOMAIN = "qwen.ai"
CHAT_HOST = "chat.qwen.ai"
AUTH_HOST = "auth.qwen.ai"
TOKEN_COOKIE = "token"  # the SPA's bearer token, as a cookie on .qwen.ai (generation B)
REFRESH_COOKIE = "refresh_token"  # auth.qwen.ai's refresh cookie (generation C, HttpOnly, 30 days)


class CookieFormatError(ValueError):
    """The input is none of the formats, or broken. The message never quotes a cookie's value."""


def is_qwen_domain(domain: str) -> bool:
    d = domain.strip().lstrip(".").lower()
    return d == QWEN_DOMAIN or d.endswith("." + QWEN_DOMAIN)


def make_cookie(name: str, value: str, domain: str, path: str = "/", expires: float = 0) -> dict:
    return {"name": name, "value": value, "domain": domain.strip().lower(), "path": path or "/",
            "expires": float(expires) if expires and expires > 0 else 0}


def keep(cookies: Iterable[dict], now: float | None = None) -> list[dict]:
    """The qwen.ai cookies that have not expired; a later cookie of the same (name, domain, path) wins."""
    now = time.time() if now is None else now
    out: dict[tuple[str, str, str], dict] = {}
    for c in cookies:
        if not c["name"] or not is_qwen_domain(c["domain"]):
            continue
        if c["expires"] and c["expires"] <= now:
            continue
        out[(c["name"], c["domain"].lstrip("."), c["path"])] = c
    return list(out.values())


def parse_netscape(text: str) -> list[dict]:
    cookies = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.rstrip("\r\n")
        if line.startswith("#HttpOnly_"):
            line = line[len("#HttpOnly_"):]
        elif not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) == 6:  # some exporters drop an empty value's field
            fields.append("")
        if len(fields) != 7:
            raise CookieFormatError(f"line {n} is not a cookies.txt line (7 tab-separated fields expected, "
                                    f"found {len(fields)})")
        domain, _sub, path, _secure, expires, name, value = fields
        try:
            exp = float(expires or 0)
        except ValueError:
            raise CookieFormatError(f"line {n}: the expiry field is not a number") from None
        cookies.append(make_cookie(name, value, domain, path, exp))
    return cookies


def _from_object(c: object, n: int) -> dict:
    if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not isinstance(c.get("value"), str):
        raise CookieFormatError(f"cookie #{n} has no string name and value")
    exp = c.get("expires", c.get("expirationDate", 0))
    if not isinstance(exp, (int, float)) or isinstance(exp, bool):
        exp = 0
    return make_cookie(c["name"], c["value"], str(c.get("domain") or ""), str(c.get("path") or "/"), exp)


def parse_json(text: str) -> tuple[list[dict], str | None]:
    """(cookies, localStorage token of chat.qwen.ai or None) from a Playwright storageState or a list."""
    try:
        data = json.loads(text)
    except ValueError:
        raise CookieFormatError("the file starts like JSON but is not valid JSON") from None
    items = data if isinstance(data, list) else data.get("cookies") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise CookieFormatError("a JSON cookie file is a Playwright storageState ({\"cookies\": [...]}) "
                                "or a list of cookies")
    cookies = [_from_object(c, n) for n, c in enumerate(items, 1)]
    token = None
    for origin in (data.get("origins") or []) if isinstance(data, dict) else []:
        if not isinstance(origin, dict) or str(origin.get("origin", "")).rstrip("/") != f"https://{CHAT_HOST}":
            continue
        for item in origin.get("localStorage") or []:
            if isinstance(item, dict) and item.get("name") == TOKEN_COOKIE and isinstance(item.get("value"), str):
                token = item["value"].strip().strip('"') or None
    return cookies, token


def parse_header(text: str) -> list[dict]:
    """A pasted `Cookie` header: `a=1; b=2` (a `Cookie:` prefix and line breaks are tolerated)."""
    text = " ".join(text.split())
    if text[:7].lower() == "cookie:":
        text = text[7:]
    cookies = []
    for part in text.split(";"):
        name, sep, value = part.strip().partition("=")
        if not part.strip():
            continue
        if not sep or not name.strip():
            raise CookieFormatError("a Cookie header is `name=value; name2=value2`")
        cookies.append(make_cookie(name.strip(), value.strip(), "." + QWEN_DOMAIN))
    if not cookies:
        raise CookieFormatError("the Cookie header is empty")
    return cookies


def parse_file(text: str) -> tuple[list[dict], str | None, str]:
    """(cookies, token from localStorage or None, format name) from an exported file, format detected."""
    head = text.lstrip("\ufeff \t\r\n")[:1]
    if head in ("{", "["):
        cookies, token = parse_json(text)
        return cookies, token, "Playwright storageState" if head == "{" else "JSON cookie list"
    if any("\t" in ln for ln in text.splitlines() if ln.strip() and not ln.startswith("# ")):
        return parse_netscape(text), None, "Netscape cookies.txt"
    raise CookieFormatError("not a cookie export: expected a Netscape cookies.txt (tab-separated) or a "
                            "Playwright storageState JSON (for a pasted Cookie header use --cookie-header)")


def domain_matches(domain: str, host: str) -> bool:
    d = domain.lstrip(".").lower()
    return host == d or host.endswith("." + d)


def for_host(cookies: Iterable[dict], host: str) -> dict[str, str]:
    """name -> value of the cookies a browser sends to `host` (the more specific domain wins a name)."""
    best: dict[str, tuple[int, str]] = {}
    for c in cookies:
        if domain_matches(c["domain"], host):
            rank = len(c["domain"].lstrip("."))
            if c["name"] not in best or rank >= best[c["name"]][0]:
                best[c["name"]] = (rank, c["value"])
    return {k: v for k, (_, v) in best.items()}


def header(jar: dict[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in jar.items())


def find(cookies: Iterable[dict], name: str) -> str | None:
    """The value of cookie `name` on the most specific qwen.ai domain (chat's, then the parent's)."""
    return for_host(cookies, CHAT_HOST).get(name) or for_host(cookies, AUTH_HOST).get(name)


def jwt_claims(token: str) -> dict | None:
    """A JWT's payload, decoded without verifying anything (only to show when it expires)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def jwt_exp(token: str) -> float | None:
    exp = (jwt_claims(token) or {}).get("exp")
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None
