"""qwen-auth: log in to Qwen (device flow with a QR code), add API keys, list and check accounts.

Accounts: `default` is Qwen Code's own login (<qwen dir>/oauth_creds.json, shared with the `qwen` CLI);
`add NAME` logs in an extra OAuth account (<qwen dir>/oauth_creds_NAME.json); `add-key NAME` adds an API
key of a Model Studio plan - pay-as-you-go, Coding Plan, Token Plan, a workspace domain - or of any
OpenAI-compatible endpoint (the key is read from an environment variable at run time, or from standard
input and stored 0600 - never from the command line); `add-web NAME` imports a Qwen Chat browser session
(opt-in and risky: the gateway uses it only with --set qwen_web_accounts=true). See docs/accounts.md.

Note: Qwen discontinued its free OAuth tier on 2026-04-15 (tokens now get 401). The OAuth login still
works against any server speaking Qwen's protocol; for qwen models today, add a key.

exit codes:
  0  ok
  1  usage or local error (bad arguments, name conflict, unreadable files)
  2  login denied by the user (access_denied)
  3  login expired or timed out (expired_token, unknown device code, no approval in time)
  4  Qwen OAuth server error, rate limit or server unreachable
  5  no such account
  6  `check` found differences between what Qwen says and what the gateway assumes
  130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from ..accounts import OAUTH, WEB
from ..auth import oauth, qr
from .auth_common import (EXIT_DENIED, EXIT_EXPIRED, EXIT_INTERRUPTED, EXIT_LOCAL, EXIT_NO_ACCOUNT, EXIT_OK,
    EXIT_SERVER, CliError)
from ..settings.auth import QWEN_OAUTH_BASE_URL, AuthSettings
from .auth_check import DESCRIPTION as CHECK, SUMMARY as CHECKS, check_options, cmd_check
from .auth_keys import cmd_add_key, preset_table, presets
from .auth_status import cmd_list, cmd_status, when
from ..auth.names import DEFAULT, check_name
from ..auth.registry import Registry, RegistryError, save_login
from ..auth.web_account import SERVED
from .auth_web import OPT_IN, RISK, cmd_add_web
from .pipes import quiet_when_stdout_closes, stdout_closed

DISCONTINUED = ("Note: Qwen discontinued its free OAuth tier on 2026-04-15; such tokens are now refused (401). "
                "For a working upstream today add a key: qwen-auth add-key NAME --preset dashscope-intl "
                "--key-env DASHSCOPE_API_KEY")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors exit 1: 2 means "login denied" here
        self.print_usage(sys.stderr)
        self.exit(EXIT_LOCAL, f"{self.prog}: error: {message}\n")


def _exit_for(e: oauth.OAuthError) -> int:
    return {"access_denied": EXIT_DENIED, "expired_token": EXIT_EXPIRED, "timeout": EXIT_EXPIRED,
            "invalid_grant": EXIT_EXPIRED}.get(e.code or "", EXIT_SERVER)


async def device_login(settings: AuthSettings, name: str | None, *, out=sys.stderr, show_qr: bool = True,
                       invert: bool = False, sleep=asyncio.sleep) -> tuple:
    """The whole device flow at a terminal; returns (path, creds) once saved."""
    verifier, challenge = oauth.pkce_pair()
    device = await oauth.device_code(settings, challenge)
    url = device.get("verification_uri_complete") or device.get("verification_uri")
    print("\n=== Qwen OAuth Device Authorization ===", file=out)
    print(f"Open this URL in a browser and approve:\n  {url}\nUser code: {device.get('user_code')}", file=out)
    if show_qr and url:
        print("\nOr scan:", file=out)
        print(qr.qr_text(url, **qr.terminal_style(out, invert=invert)), file=out)
    minutes = max(1, round(float(device.get("expires_in") or oauth.DEFAULT_DEVICE_EXPIRES_S) / 60))
    print(f"Waiting for approval (up to {minutes} min; Ctrl-C to stop)…", file=out, flush=True)

    def on_event(status: str, detail: str | None) -> None:
        if status == oauth.SLOW_DOWN:
            print("The server asked to poll more slowly; slowing down.", file=out, flush=True)
        elif status == oauth.TRANSIENT and detail:
            print(detail, file=out, flush=True)

    token = await oauth.poll_token(settings, device, verifier, on_event=on_event, sleep=sleep)
    return save_login(settings, name, token)


def _settings(a) -> AuthSettings:
    return AuthSettings.from_env(qwen_dir=Path(a.qwen_dir).expanduser() if a.qwen_dir else None,
                                 state_dir=Path(a.state_dir).expanduser() if a.state_dir else None,
                                 oauth_base_url=a.oauth_base_url, default_api_base=a.api_base)


# ---- commands ------------------------------------------------------------------------------------


def cmd_login(a, settings: AuthSettings) -> int:
    name = getattr(a, "name", None)
    if name is not None:
        check_name(name)
    data = Registry(settings).load()
    other = Registry(settings).find(data, name) if name else None
    if other is not None and other.get("kind") != OAUTH:
        raise CliError(f"account {name!r} already exists as a {other.get('kind')} account; remove it first")
    if settings.oauth_base_url == QWEN_OAUTH_BASE_URL:
        print(DISCONTINUED, file=sys.stderr)
    try:
        path, creds = asyncio.run(device_login(settings, name, show_qr=not a.no_qr, invert=a.invert))
    except oauth.OAuthError as e:
        raise CliError(str(e), _exit_for(e)) from e
    print(f"Logged in: account {name or DEFAULT} saved to {path} (token expires {when(creds['expiry_date'])}).")
    return EXIT_OK


def cmd_remove(a, settings: AuthSettings) -> int:
    reg = Registry(settings)
    data = reg.load()
    if a.name == DEFAULT:
        path = settings.default_creds_path
        if a.force:
            path.unlink(missing_ok=True)
            data.pop("detach_default", None)
            reg.save(data)
            print(f"Deleted {path}: Qwen Code is logged out too.")
        else:
            data["detach_default"] = True
            reg.save(data)
            print(f"Detached the default account; Qwen Code's {path.name} is left untouched "
                  "(`qwen-auth login` attaches it again).")
        return EXIT_OK
    spec = reg.find(data, a.name)
    if spec is None:
        raise CliError(f"no account named {a.name!r}", EXIT_NO_ACCOUNT)
    data["accounts"] = [s for s in data["accounts"] if s is not spec]
    reg.save(data)
    msg = f"Removed account {a.name}."
    if spec.get("kind") in (OAUTH, WEB):
        path = settings.creds_path(a.name) if spec.get("kind") == OAUTH else settings.web_session_path(a.name)
        if a.force:
            path.unlink(missing_ok=True)
            msg += f" Deleted {path.name}."
        elif path.exists():
            msg += f" Its {'login' if spec.get('kind') == OAUTH else 'session'} file {path} is kept (--force deletes it)."
    print(msg)
    return EXIT_OK


PRESET_TABLE = preset_table()


def _sub(sub, name: str, summary: str, description: str, **kw) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=summary, description=description,
                          formatter_class=argparse.RawDescriptionHelpFormatter, **kw)


def _login_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-qr", action="store_true", help="do not draw the QR code")
    p.add_argument("--invert", action="store_true",
                   help="draw the QR code for a light terminal background (default: colours on a terminal, "
                        "else drawn for a dark background)")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="qwen-auth", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qwen-dir", help="Qwen Code's folder (default $QWEN_DIR or ~/.qwen)")
    ap.add_argument("--state-dir", help="the gateway's folder (default $QWEN_GATEWAY_HOME or ~/.qwen-gateway)")
    ap.add_argument("--oauth-base-url",
                    help="Qwen OAuth server (default $QWEN_OAUTH_BASE_URL or https://chat.qwen.ai)")
    ap.add_argument("--api-base", help="API base for a login without resource_url (default $QWEN_API_BASE or "
                                       "https://dashscope.aliyuncs.com/compatible-mode/v1)")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    p = _sub(sub, "login", "log in the default account (Qwen Code's oauth_creds.json)",
             "Log in Qwen Code's own account with the OAuth device flow: open the URL shown (or scan the QR\n"
             "code), approve, and the login is saved to <qwen dir>/oauth_creds.json, shared with the `qwen` CLI.\n"
             "Also re-attaches the default account after `qwen-auth remove default`.")
    _login_options(p)
    p = _sub(sub, "add", "log in an extra OAuth account (oauth_creds_NAME.json)",
             "Log in an extra OAuth account with the device flow; saved to <qwen dir>/oauth_creds_NAME.json\n"
             "and listed in <state dir>/accounts.json. Run it again to log the account in again.")
    p.add_argument("name", help="the account's name (letters, digits, '.', '_', '-')")
    _login_options(p)
    p = _sub(sub, "add-key", "add an API-key account (Model Studio plans, or any OpenAI-compatible URL)",
             "Add an API-key account. The key never goes on the command line: name an environment variable\n"
             "(--key-env, read by the gateway at run time) or pipe it in (--key-stdin, stored 0600).\n"
             "The endpoint is a --preset, a workspace domain (--workspace ID --region REGION) or --base-url.\n"
             "A key that does not fit the plan of its endpoint gets a warning (a 401 otherwise). Once saved,\n"
             "the key is checked with one GET BASE/models (--no-check skips it): one line says what the base\n"
             "lists, that it refused the key, or that it could not be reached; the account is kept either way.\n\n"
             "presets:\n" + PRESET_TABLE)
    p.add_argument("name", help="the account's name (letters, digits, '.', '_', '-')")
    p.add_argument("--preset", choices=list(presets()), metavar="PRESET",
                   help="a Model Studio plan and region (listed above); fills --base-url and --default-model")
    p.add_argument("--workspace", metavar="ID", help="a pay-as-you-go workspace-dedicated domain: the workspace id")
    p.add_argument("--region", metavar="REGION", help="the workspace's region, e.g. cn-beijing, ap-southeast-1")
    p.add_argument("--base-url", help="OpenAI-compatible API base, e.g. https://…/compatible-mode/v1")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--key-env", metavar="VAR", help="environment variable holding the key at run time")
    g.add_argument("--key-stdin", action="store_true", help="read the key from standard input and store it (0600)")
    p.add_argument("--model-map", action="extend", nargs="+", default=[], metavar="ALIAS=MODEL",
                   help="send MODEL upstream when a client asks for ALIAS (repeatable)")
    p.add_argument("--default-model", metavar="MODEL", help="model used when a client's model is unknown")
    p.add_argument("--embeddings", action="store_true", help="this upstream serves /embeddings")
    p.add_argument("--provider", metavar="NAME",
                   help="the server behind the base: dashscope (Model Studio's compatible mode, the default) or "
                        "selfhosted (an OpenAI-compatible server you run, vLLM or SGLang, serving open Qwen weights)")
    p.add_argument("--group", metavar="NAME", help="keys of one Alibaba Cloud account share a NAME: its limits are "
                   "summed over its keys, so a quota or throttle on one cools them all")
    p.add_argument("--month-day", type=int, metavar="DAY", help="Coding Plan: the day of the month its subscription "
                   "started (its monthly quota comes back then, 00:00 UTC+8)")
    p.add_argument("--replace", action="store_true",
                   help="replace an existing key account of this name (without a new --key-env/--key-stdin "
                        "its key is kept)")
    p.add_argument("--no-check", action="store_true",
                   help="do not check the key (by default, once saved, it is tried with one GET BASE/models)")
    p = _sub(sub, "add-web", "import a Qwen Chat browser session (chat.qwen.ai; opt-in, risky)",
             "Import a logged-in chat.qwen.ai browser session as a web account: the cookie jar, the token, the\n"
             "browser's User-Agent and, when given, its bx-* headers. Stored 0600 in <state dir>/web/NAME.json.\n"
             "Secrets never go on the command line: --token, --cookie-header, --bx-ua and --bx-umidtoken read `-`\n"
             "(standard input, not echoed on a terminal; one of them at most) or a FILE. Without --token, the\n"
             "jar's `token` cookie (or a storageState's localStorage token) is used. A `refresh_token` cookie\n"
             "(auth.qwen.ai) lets the session refresh.\n\n"
             + RISK + "\n" + OPT_IN + " " + SERVED)
    p.add_argument("name", help="the account's name (letters, digits, '.', '_', '-')")
    p.add_argument("--cookies", metavar="FILE",
                   help="the browser's cookies: a Netscape cookies.txt or a Playwright storageState JSON (detected)")
    p.add_argument("--cookie-header", metavar="-|FILE",
                   help="a Cookie header copied from DevTools: `-` reads standard input, else a file holding it")
    p.add_argument("--token", metavar="-|FILE",
                   help="the bearer token (localStorage `token`): `-` reads standard input, else a file")
    p.add_argument("--user-agent", metavar="UA", help="the browser's User-Agent (navigator.userAgent)")
    p.add_argument("--bx-ua", metavar="-|FILE", help="the bx-ua header of a chat.qwen.ai request (optional): `-` "
                                                     "reads standard input, else a file holding it")
    p.add_argument("--bx-umidtoken", metavar="-|FILE", help="the bx-umidtoken header (optional): `-` or a file")
    p.add_argument("--bx-v", metavar="VALUE", help="the bx-v header, e.g. 2.5.36 (optional)")
    p.add_argument("--replace", action="store_true", help="replace the session of an existing web account")
    p = _sub(sub, "remove", "remove an account (never deletes Qwen Code's login without --force)",
             "Remove an account from the pool. `remove default` detaches Qwen Code's login (its file is left\n"
             "alone; `qwen-auth login` attaches it again). An extra OAuth account's login file is kept unless\n"
             "--force. A key account's entry (with a stored key) is deleted from accounts.json.")
    p.add_argument("name", help="the account to remove (`default` for Qwen Code's login)")
    p.add_argument("--force", action="store_true", help="also delete the account's login file (for `default`: "
                                                        "Qwen Code's oauth_creds.json)")
    p = _sub(sub, "list", "accounts: name, kind, state, expiry, requests today",
             "One line per account: name, kind, state, token expiry, requests today. No secrets.")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p = _sub(sub, "status", "accounts in detail: state, expiry, cooldown, upstream, last error",
             "Accounts in detail: state, expiry, cooldown, requests today, upstream URL and the last error,\n"
             "then where the files are. Never a token or key.")
    p.add_argument("--json", action="store_true", help="print JSON for scripts (the gateway's /health rows)")
    check_options(_sub(sub, "check", CHECKS, CHECK))
    return ap


def _check(a: argparse.Namespace, settings: AuthSettings) -> int:
    # the providers' checks come with the gateway's composition (mitmproxy's proxy, every dialect: ~1.3 s of
    # CPU to import): only this command loads it
    from ..components import drift_check

    return cmd_check(a, settings, drift_check)


HANDLERS = {"login": cmd_login, "add": cmd_login, "add-key": cmd_add_key, "add-web": cmd_add_web, "remove": cmd_remove,
            "list": cmd_list, "status": cmd_status, "check": _check}


@quiet_when_stdout_closes
def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        settings = _settings(a)
        return HANDLERS[a.cmd](a, settings)
    except CliError as e:
        print(f"qwen-auth: {e}", file=sys.stderr)
        return e.code
    except (ValueError, RegistryError) as e:
        print(f"qwen-auth: {e}", file=sys.stderr)
        return EXIT_LOCAL
    except OSError as e:
        if isinstance(e, BrokenPipeError) and stdout_closed():  # `| head`: ended quietly (cli/pipes.py)
            raise
        print(f"qwen-auth: {type(e).__name__}: {e.strerror or e} ({getattr(e, 'filename', '') or ''})",
              file=sys.stderr)
        return EXIT_LOCAL
    except KeyboardInterrupt:
        print("\nqwen-auth: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
