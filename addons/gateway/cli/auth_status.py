"""`qwen-auth list` and `qwen-auth status`: the accounts as a table or as JSON, from the pool's status rows
(the gateway's /health rows). Never a token or key."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from ..provider_registry import of_kind
from ..settings.auth import AuthSettings
from .auth_common import EXIT_OK
from ..auth.key_account import CHECKED
from ..upstream.pool.pool import AccountPool
from .auth_web import disabled_note, status_line


def when(ms_or_iso: float | str | None) -> str:
    """Epoch ms or an ISO time from status() as `2026-05-01 12:34 UTC`."""
    if isinstance(ms_or_iso, (int, float)):
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ms_or_iso / 1000))
    return ms_or_iso[:16].replace("T", " ") + " UTC" if ms_or_iso else "-"


def _table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _rows(settings: AuthSettings) -> list[dict]:
    pool = AccountPool.from_settings(settings)
    try:
        return pool.status()
    finally:
        pool.close()


status_rows = _rows  # the admin API's accounts (cli/admin_views.py): the rows status --json prints


def _none(settings: AuthSettings) -> str:
    return ("No accounts. Run `qwen-auth login` (Qwen Code OAuth) or `qwen-auth add-key NAME --preset "
            f"dashscope-intl --key-env DASHSCOPE_API_KEY`. (Looked in {settings.qwen_dir} and {settings.state_dir}.)")


def cmd_list(a, settings: AuthSettings) -> int:
    rows = _rows(settings)
    if a.json:
        print(json.dumps([{k: r.get(k) for k in ("name", "kind", "state", "expires_at", "requests_today")}
                          for r in rows], indent=2))
        return EXIT_OK
    if not rows:
        print(_none(settings))
        return EXIT_OK
    table = [("NAME", "KIND", "STATE", "EXPIRES", "TODAY")]
    table += [(r["name"], r["kind"], r.get("state") or "?", when(r.get("expires_at")),
               str(r.get("requests_today", 0))) for r in rows]
    print(_table(table))
    return EXIT_OK


def _state(row: dict) -> str:
    """The STATE column: `check_failed` for a key whose add-key check failed and that has served nothing since
    (the pool still tries it: /health says `ok`, with the check's line)."""
    state = row.get("state") or "?"
    return "check_failed" if state == "ok" and str(row.get("last_error") or "").startswith(CHECKED) else state


def _provider(row: dict) -> str:
    """The PROVIDER column: the server the account is of, as the account knows it (a key names its own:
    dashscope, selfhosted), else its kind's (OAuth: dashscope, Qwen's portal; a web session: qwenweb)."""
    return str(row.get("provider") or of_kind(row.get("kind") or "") or "-")


def cmd_status(a, settings: AuthSettings) -> int:
    rows = _rows(settings)
    if a.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print(_none(settings))
        return EXIT_OK
    table = [("ACCOUNT", "KIND", "PROVIDER", "STATE", "EXPIRES", "COOLDOWN UNTIL", "TODAY", "UPSTREAM")]
    table += [(r["name"], r["kind"], _provider(r), _state(r), when(r.get("expires_at")),
               when(r.get("cooldown_until")), str(r.get("requests_today", 0)), r.get("base_url") or "-")
              for r in rows]
    print(_table(table))
    for r in rows:
        if r.get("kind") == "web":  # expires in, refresh, last punish, cooldown: never a cookie or token
            print(status_line(r))
        if r.get("last_error") and (r.get("state") not in ("ok", "disabled") or r["last_error"].startswith(CHECKED)):
            msg = r["last_error"].removeprefix(f"{r['name']}: ")
            print(f"  {r['name']}: {msg}")
    note = disabled_note(rows)
    if note:
        print(f"\n{note}")
    print(f"\nQwen Code folder: {settings.qwen_dir}   gateway state: {settings.state_dir}")
    return EXIT_OK
