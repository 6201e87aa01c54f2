"""`qwen-auth add-web`: import a Qwen Chat browser session (opt-in, risky), and the web lines of `status`.

Secrets never come from the command line (they would show in `ps` and the shell's history): the token, a
pasted Cookie header and the bx-ua / bx-umidtoken headers (Baxia's tokens of the browser session) are read
from standard input (`-`, without echo on a terminal; one of them at most) or from a file.
Nothing secret is printed: counts, cookie names of note, expiry and header names only.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

from ..accounts import WEB
from ..settings.auth import QWEN_WEB_AUTH_BASE_URL, QWEN_WEB_BASE_URL, AuthSettings
from ..auth import web_cookies as wc
from ..auth import web_session as ws
from .auth_common import EXIT_OK, CliError
from ..auth.names import check_name
from ..auth.registry import Registry
from ..auth.state import AccountState
from ..auth.web_account import SERVED

RISK = ("Web accounts automate your own Qwen Chat account outside the browser: Qwen may see this as a breach "
        "of its terms, answer with anti-bot blocks, or ban the account.")
OPT_IN = "The gateway uses them only with --set qwen_web_accounts=true."


def _secret(src: str, flag: str, prompt: str) -> str:
    """The value behind `--flag SRC`: `-` reads standard input, anything else names a file."""
    if src == "-":
        value = getpass.getpass(prompt) if sys.stdin.isatty() else sys.stdin.read()
    else:
        path = Path(src).expanduser()
        if not path.is_file():
            # Never echo src: it may be the secret itself, pasted where a file name belongs.
            raise CliError(f"{flag} takes - (standard input) or a FILE holding it, never the value itself "
                           "(a command line shows in `ps` and the shell history)")
        value = path.read_text(encoding="utf-8")
    value = value.strip()
    if not value:
        raise CliError(f"{flag}: nothing to read")
    return value


def _duration(seconds: float) -> str:
    s = int(abs(seconds))
    text = f"{s // 86400} d" if s >= 86400 else f"{s // 3600} h" if s >= 3600 else f"{max(s // 60, 1)} min"
    return f"in {text}" if seconds >= 0 else f"{text} ago"


def _cookies(a) -> tuple[list[dict], str | None, list[str], int]:
    """(qwen.ai cookies, localStorage token, where they came from, how many other cookies were dropped)."""
    found: list[dict] = []
    sources, ls_token = [], None
    if a.cookies:
        try:
            text = Path(a.cookies).expanduser().read_text(encoding="utf-8")
        except OSError as e:
            raise CliError(f"--cookies: cannot read {a.cookies} ({type(e).__name__})") from None
        try:
            cookies, ls_token, fmt = wc.parse_file(text)
        except wc.CookieFormatError as e:
            raise CliError(f"--cookies {a.cookies}: {e}") from None
        found += cookies
        sources.append(fmt)
    if a.cookie_header:
        try:
            found += wc.parse_header(_secret(a.cookie_header, "--cookie-header", "Cookie header (not echoed): "))
        except wc.CookieFormatError as e:
            raise CliError(f"--cookie-header: {e}") from None
        sources.append("Cookie header")
    kept = wc.keep(found)
    if found and not kept:
        raise CliError(f"no usable qwen.ai cookie in the {' and '.join(sources)} ({len(found)} cookies for other "
                       "sites or expired): export them from a browser logged in at https://chat.qwen.ai")
    return kept, ls_token, sources, len(found) - len(kept)


# The flags whose value is a secret: `-` (standard input) or a FILE holding it.
SECRET_FLAGS = (("token", "--token"), ("cookie_header", "--cookie-header"), ("bx_ua", "--bx-ua"),
                ("bx_umidtoken", "--bx-umidtoken"))


def cmd_add_web(a, settings: AuthSettings) -> int:
    check_name(a.name)
    stdin = [flag for attr, flag in SECRET_FLAGS if getattr(a, attr) == "-"]
    if len(stdin) > 1:
        raise CliError(f"{stdin[0]} and {stdin[1]} cannot both read standard input: put one in a file")
    reg = Registry(settings)
    old = reg.find(reg.load(), a.name)
    if old is not None and old.get("kind") != WEB:
        raise CliError(f"account {a.name!r} already exists as a {old.get('kind')} account; remove it first")
    if old is not None and not a.replace:
        raise CliError(f"account {a.name!r} already exists (web account); add --replace to import a new session")
    cookies, ls_token, sources, dropped = _cookies(a)
    token = _secret(a.token, "--token", "Token (not echoed): ") if a.token else None
    token = token.removeprefix("Bearer ").strip() if token else (wc.find(cookies, wc.TOKEN_COOKIE) or ls_token)
    if not token:
        raise CliError("no token: the cookies hold no `token` cookie" + (" (and no localStorage token)" if sources
                       else " (none given)") + ". Give the session's token with --token - (standard input) or "
                       "--token FILE: in the browser's DevTools on chat.qwen.ai, Application > Local Storage > "
                       "`token`, or a request's Authorization header without `Bearer `")
    bx = {"bx-ua": _secret(a.bx_ua, "--bx-ua", "bx-ua (not echoed): ") if a.bx_ua else None,
          "bx-umidtoken": _secret(a.bx_umidtoken, "--bx-umidtoken", "bx-umidtoken (not echoed): ")
          if a.bx_umidtoken else None,
          "bx-v": a.bx_v}  # a version number, no secret
    session = ws.new_session(token, cookies, user_agent=a.user_agent, bx={k: v for k, v in bx.items() if v})
    path = settings.web_session_path(a.name)
    ws.save(path, session)
    # the web API this session belongs to, when it is not Qwen Chat's (QWEN_WEB_BASE_URL at import: the
    # emulator): kept with the account, so the gateway and `status` use it whatever their environment says
    entry: dict = {"name": a.name, "kind": WEB}
    if (settings.web_base_url, settings.web_auth_base_url) != (QWEN_WEB_BASE_URL, QWEN_WEB_AUTH_BASE_URL):
        entry.update(base_url=settings.web_base_url, auth_base_url=settings.web_auth_base_url)
    reg.put(entry, replace=True)
    state = AccountState(settings.state_db_path)
    try:
        if state.get(a.name)["needs_login"]:
            state.set(a.name, needs_login=False, last_error=None)
    finally:
        state.close()
    left = session.expires_in()
    print(f"{'Replaced' if old else 'Added'} web account {a.name}: {len(cookies)} qwen.ai cookies"
          f"{' from the ' + ' and '.join(sources) if sources else ''}"
          f"{f' ({dropped} for other sites or expired left out)' if dropped else ''}; token "
          f"{'expires ' + _duration(left) if left is not None and left >= 0 else 'expired ' + _duration(left) if left is not None else 'without an expiry'}"
          f"; refresh {'possible (refresh_token cookie)' if session.can_refresh else 'impossible (no refresh_token cookie)'}"
          f"; {', '.join(sorted(session.bx)) or 'no bx-* headers'}; user agent {'set' if a.user_agent else 'not set'}."
          f"\nStored in {path} (mode 0600)"
          f"{'; upstream ' + entry['base_url'] if 'base_url' in entry else ''}.")
    if not cookies:
        print("Warning: no cookie jar: Qwen's anti-bot checks refuse a bare token on most requests; give "
              "--cookies FILE or --cookie-header.", file=sys.stderr)
    if not a.user_agent:
        print("Warning: no --user-agent: give the browser's own (navigator.userAgent) so requests match the "
              "browser that made these cookies.", file=sys.stderr)
    if left is not None and left < 0 and not session.can_refresh:
        print("Warning: this token has expired and cannot be refreshed: import a fresh session.", file=sys.stderr)
    print(f"Note: {RISK} {OPT_IN} {SERVED}", file=sys.stderr)
    return EXIT_OK


def status_line(r: dict) -> str:
    """The details of a web account's status row, for `qwen-auth status` (no secret is in a row)."""
    left = r.get("expires_in_s")
    parts = [f"web session {r.get('session') or r.get('state')}",
             "expiry unknown" if left is None else f"token expires {_duration(left)}",
             f"refresh {r.get('refresh') or '-'}",
             f"last punish {r['last_punish'].replace('T', ' ').rstrip('Z') + ' UTC' if r.get('last_punish') else 'never'}",
             f"{r.get('cookies', 0)} cookies", ", ".join(r.get("bx_headers") or []) or "no bx-* headers",
             f"user agent {'set' if r.get('user_agent') else 'not set'}"]
    if r.get("cooldown_until"):
        parts.append(f"cooling down until {r['cooldown_until'].replace('T', ' ').rstrip('Z')} UTC")
    return f"  {r['name']}: " + "; ".join(parts)


def disabled_note(rows: list[dict]) -> str | None:
    if any(r.get("kind") == WEB and r.get("state") == "disabled" for r in rows):
        return f"Web accounts are off in qwen-auth's view: {OPT_IN} {RISK}"
    return None
