"""qwen-auth: log in to Qwen (device flow with QR code), add API keys, list and check accounts.

Exit codes: 0 ok · 1 usage or local error · 2 login denied · 3 login expired or timed out ·
4 Qwen OAuth server error or unreachable · 5 no such account.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
from pathlib import Path

from . import oauth
from .accounts import Registry
from .base import KEY, OAUTH
from .credfile import LOGIN_ORDER, write_creds
from .pool import AccountPool
from .settings import AuthSettings

PRESETS = {
    "dashscope-intl": ("https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "qwen3-coder-plus"),
    "dashscope-cn": ("https://dashscope.aliyuncs.com/compatible-mode/v1", "qwen3-coder-plus"),
    "coding-plan": ("https://coding.dashscope.aliyuncs.com/v1", "qwen3-coder-plus"),
}
EXIT_DENIED, EXIT_EXPIRED, EXIT_SERVER, EXIT_NO_ACCOUNT = 2, 3, 4, 5


def qr_text(data: str) -> str:
    import qrcode

    qr = qrcode.QRCode(border=1)
    qr.add_data(data)
    out = io.StringIO()
    qr.print_ascii(out=out, invert=True)
    return out.getvalue()


async def device_login(settings: AuthSettings, target: Path, out=sys.stderr) -> dict:
    verifier, challenge = oauth.pkce_pair()
    device = await oauth.device_code(settings, challenge)
    url = device.get("verification_uri_complete") or device.get("verification_uri")
    print("\nQwen OAuth Device Authorization", file=out)
    print(f"Open this URL and approve:\n  {url}\nUser code: {device.get('user_code')}\n", file=out)
    print(qr_text(url), file=out)
    print("Waiting for approval…", file=out, flush=True)
    token = await oauth.poll_token(settings, device, verifier)
    creds = oauth.creds_from_token(token)
    write_creds(target, creds, LOGIN_ORDER)
    return creds


def _settings(a) -> AuthSettings:
    return AuthSettings.from_env(qwen_dir=Path(a.qwen_dir).expanduser() if a.qwen_dir else None,
                                 state_dir=Path(a.state_dir).expanduser() if a.state_dir else None,
                                 oauth_base_url=a.oauth_base_url)


def cmd_login(a, settings: AuthSettings) -> int:
    name = getattr(a, "name", None)
    target = settings.qwen_dir / (f"oauth_creds_{name}.json" if name else "oauth_creds.json")
    try:
        creds = asyncio.run(device_login(settings, target))
    except oauth.OAuthError as e:
        print(f"qwen-auth: {e}", file=sys.stderr)
        return {"access_denied": EXIT_DENIED, "expired_token": EXIT_EXPIRED, "timeout": EXIT_EXPIRED,
                "invalid_grant": EXIT_EXPIRED}.get(e.code or "", EXIT_SERVER)
    except Exception as e:  # network and the like: say what, without a traceback
        print(f"qwen-auth: cannot reach {settings.oauth_base_url}: {type(e).__name__}", file=sys.stderr)
        return EXIT_SERVER
    reg = Registry(settings)
    data = reg.load()
    if name:
        data["accounts"] = [s for s in data["accounts"] if s.get("name") != name] + [{"name": name, "kind": OAUTH}]
    else:
        data.pop("detach_default", None)
    reg.save(data)
    print(f"Logged in: account {name or 'default'} saved to {target} (expires "
          f"{_iso_ms(creds['expiry_date'])}).")
    return 0


def _iso_ms(ms: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ms / 1000))


def cmd_add_key(a, settings: AuthSettings) -> int:
    base, model = PRESETS.get(a.preset, (None, None)) if a.preset else (None, None)
    base = a.base_url or base
    if not base:
        print("qwen-auth: give --base-url or --preset", file=sys.stderr)
        return 1
    spec = {"name": a.name, "kind": KEY, "base_url": base.rstrip("/"), "default_model": a.default_model or model}
    if a.key_env:
        spec["key_env"] = a.key_env
    else:
        key = sys.stdin.readline().strip()
        if not key:
            print("qwen-auth: no key on standard input", file=sys.stderr)
            return 1
        spec["key"] = key
    if a.model_map:
        spec["model_map"] = dict(m.split("=", 1) for m in a.model_map)
    if a.embeddings:
        spec["embeddings"] = True
    reg = Registry(settings)
    data = reg.load()
    data["accounts"] = [s for s in data["accounts"] if s.get("name") != a.name] + [spec]
    reg.save(data)
    where = f"read from ${a.key_env} at run time" if a.key_env else f"stored in {reg.path} (mode 0600)"
    print(f"Added key account {a.name} → {spec['base_url']} (key {where}).")
    return 0


def cmd_remove(a, settings: AuthSettings) -> int:
    reg = Registry(settings)
    data = reg.load()
    if a.name == "default":
        data["detach_default"] = True
        reg.save(data)
        print("Detached the default account; qwen-code's oauth_creds.json is left untouched.")
        return 0
    before = len(data["accounts"])
    data["accounts"] = [s for s in data["accounts"] if s.get("name") != a.name]
    if len(data["accounts"]) == before:
        print(f"qwen-auth: no account named {a.name}", file=sys.stderr)
        return EXIT_NO_ACCOUNT
    reg.save(data)
    if a.force:
        (settings.qwen_dir / f"oauth_creds_{a.name}.json").unlink(missing_ok=True)
    print(f"Removed account {a.name}.")
    return 0


def cmd_status(a, settings: AuthSettings) -> int:
    pool = AccountPool.from_settings(settings)
    rows = pool.status()
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("No accounts. Run `qwen-auth login` or `qwen-auth add-key NAME --preset dashscope-intl --key-env VAR`.")
        return 0
    head = ("ACCOUNT", "KIND", "STATE", "EXPIRES", "TODAY", "UPSTREAM")
    table = [head] + [(r["name"], r["kind"], r.get("state", "?"), (r.get("expires_at") or "-").replace("T", " "),
                       str(r.get("requests_today", 0)), r.get("base_url") or "-") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    for r in rows:
        if r.get("last_error") and r.get("state") != "ok":
            print(f"  {r['name']}: {r['last_error']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="qwen-auth", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qwen-dir", help="Qwen Code's folder (default $QWEN_DIR or ~/.qwen)")
    ap.add_argument("--state-dir", help="the gateway's folder (default $QWEN_GATEWAY_HOME or ~/.qwen-gateway)")
    ap.add_argument("--oauth-base-url", help="Qwen OAuth server (default $QWEN_OAUTH_BASE_URL or https://chat.qwen.ai)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("login", help="log in the default account (qwen-code's oauth_creds.json)")
    p = sub.add_parser("add", help="log in an extra OAuth account")
    p.add_argument("name")
    p = sub.add_parser("add-key", help="add an API-key account (DashScope / Model Studio / Coding Plan / any)")
    p.add_argument("name")
    p.add_argument("--preset", choices=sorted(PRESETS))
    p.add_argument("--base-url")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--key-env", help="environment variable holding the key at run time")
    g.add_argument("--key-stdin", action="store_true", help="read the key from standard input and store it (0600)")
    p.add_argument("--model-map", action="append", default=[], metavar="ALIAS=MODEL")
    p.add_argument("--default-model")
    p.add_argument("--embeddings", action="store_true", help="this upstream serves /embeddings")
    p = sub.add_parser("remove", help="remove an account (never deletes qwen-code's file)")
    p.add_argument("name")
    p.add_argument("--force", action="store_true", help="also delete an extra account's credential file")
    for name in ("list", "status"):
        p = sub.add_parser(name, help="accounts with state, expiry and requests today")
        p.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    settings = _settings(a)
    handlers = {"login": cmd_login, "add": cmd_login, "add-key": cmd_add_key, "remove": cmd_remove,
                "list": cmd_status, "status": cmd_status}
    return handlers[a.cmd](a, settings)


if __name__ == "__main__":
    raise SystemExit(main())
