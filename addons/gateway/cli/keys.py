"""qwen-keys: named client keys for a team gateway — who may use it, within which limits, and what each spent.

    qwen-keys add NAME [--rpm N] [--tpm N] [BUDGET …]
                                 a new key; printed once, as the last line (only its SHA-256 is stored)
    qwen-keys list               name, state, limits, spent today / this month, last used (--wide, --json)
    qwen-keys set NAME [--rpm N] [--tpm N] [BUDGET …]
                                 change a key's limits (0 removes one)
    qwen-keys revoke NAME        the key stops working (it stays listed: a gateway with keys still needs one)
    qwen-keys rotate NAME        a new key for NAME (printed as the last line); the old one stops working
    qwen-keys delete NAME        the key gone for good: its record and spend (the usage ledger keeps its
                                 requests); once no key is left, the gateways need none again
    qwen-keys migrate --to URL   move the folder's keys, limits and spend to a shared database (--from URL: back)
    qwen-keys add-admin NAME     a credential for the gateway's admin API (qwen_admin_listen), printed once
                                 (list-admins, revoke-admin NAME; docs/admin-api.md)

    --state-dir DIR              default: $QWEN_GATEWAY_HOME, else ~/.qwen-gateway (keys.sqlite3, mode 0600)
    --state-url URL              the gateways' shared PostgreSQL database (postgresql://user@host:port/db, no
                                 password: libpq reads PGPASSFILE, ~/.pgpass); default $QWEN_STATE_URL

Once any named key exists (revoked ones too), the gateway requires one on every request (Authorization: Bearer
KEY or x-api-key; the keys of qwen_client_keys_file / $QWEN_GATEWAY_KEYS keep working). A change returns once
every running gateway applied it (else, after 10 s, it names those that did not: exit status 3); changes of one key
take turns (one whose key another command changed while it waited changes nothing: exit status 1); the requests
in flight with a revoked, rotated or deleted key end then (qwen_key_change_in_flight). Limits: requests and
tokens per minute (rpm, tpm), and the budgets below. See docs/keys.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import json
import os
import re
import sys

from ..settings.auth import resolve_state_dir
from ..tenancy import budgets
from ..tenancy.store import FILENAME, KeyNameError, KeyStore
from ..storage.pg import Database, StateUrlError
from . import admin_creds, keys_applied, keys_lock, keys_migrate, keys_ops, usage_store
from .keys_list import rows, table
from .pipes import quiet_when_stdout_closes

NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9@._-]{0,63}\Z")  # shown in logs, mitmweb and metric labels
BUDGET_HELP = "BUDGET:\n" + "\n".join(f"    {b.option('MODEL', 'N' if b.counts == budgets.TOKENS else 'X'):<29}{b.help}"
                                        for b in budgets.BUDGETS) + "\n\n"


def _name(value: str) -> str:
    if not NAME_RE.match(value):
        raise argparse.ArgumentTypeError(f"{value!r}: a key name is letters, digits, '@', '.', '_' or '-' (max 64)")
    return value


def _count(value: str) -> int:
    if value.isdigit():
        return int(value)
    raise argparse.ArgumentTypeError(f"not a whole number ≥ 0: {value!r}")


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds between 0 and 3600, got {value!r}")
    return seconds


def _budget(budget: budgets.Budget) -> Callable[[str], tuple[str, float]]:
    def parsed(value: str) -> tuple[str, float]:
        try:
            return budgets.parse(budget, value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return parsed


def _limits_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rpm", type=_count, metavar="N", help="requests per minute")
    p.add_argument("--tpm", type=_count, metavar="N", help="tokens per minute (the prompt estimated, then counted)")
    for b in budgets.BUDGETS:  # each budget's flag as its declaration says (tenancy/budgets.py)
        p.add_argument(f"--{b.flag}", type=_budget(b), dest=b.field, action="append" if b.per_model else "store",
                       metavar=("MODEL=" if b.per_model else "") + ("N" if b.counts == budgets.TOKENS else "X"),
                       help=b.help)


def _limits(a: argparse.Namespace) -> dict[str, float]:
    """rpm, tpm and the budgets in their own columns of client_keys."""
    out: dict[str, float] = {k: getattr(a, k) for k in ("rpm", "tpm") if getattr(a, k, None) is not None}
    for b in budgets.BUDGETS:
        if b.column and (given := getattr(a, b.field, None)) is not None:
            out[b.column] = int(given[1]) if b.counts == budgets.TOKENS else given[1]
    return out


def _others(a: argparse.Namespace) -> dict[str, list[tuple[str, float]]]:
    """The other budgets given: {flag: [(model or "", amount)]} (tenancy/budgets.py `merged`)."""
    return {b.flag: given if b.per_model else [given] for b in budgets.BUDGETS
            if not b.column and (given := getattr(a, b.field, None)) is not None}


def _open(ap: argparse.ArgumentParser, a: argparse.Namespace, *, create: bool) -> KeyStore | None:
    """The store the folder's gateway uses (usage_store.database: the database its notes name, said on stderr, or
    the one --state-url names; `a.state_url` is then it), else the folder's keys file."""
    state = resolve_state_dir(a.state_dir)
    a.state_url, followed = usage_store.database(state, a.state_url, "qwen-keys", moved=True)
    if followed:
        print(followed, file=sys.stderr)
    if a.state_url:
        try:
            return KeyStore.remote(Database(a.state_url))
        except StateUrlError as e:
            ap.error(str(e))
        except Exception as e:  # psycopg's errors name host, port and user, never the password
            ap.exit(1, f"qwen-keys: cannot use the shared database: {type(e).__name__}: {e}\n")
    if not create and not (state / FILENAME).exists():
        return None
    return KeyStore.local(state)


def run(ap: argparse.ArgumentParser, a: argparse.Namespace) -> int:
    store = _open(ap, a, create=a.command != "list")
    if store is None:
        print(json.dumps([]) if a.json else table([]))
        return 0
    try:
        if a.command == "list":
            items = rows(store)
            print(json.dumps(items, indent=2) if a.json else table(items, a.wide))
            return 0
        if a.command == "set" and not _limits(a) and not _others(a):
            ap.error("set: give at least one of --rpm, --tpm, " + ", ".join(f"--{b.flag}" for b in budgets.BUDGETS
                                                                            if b.column) + " (0 removes a limit)"
                     + "".join(f", {b.option('MODEL', 'X')} ({b.option('MODEL', '0').split()[1]} removes it)"
                               for b in budgets.BUDGETS if not b.column))
        place = keys_ops.Place(resolve_state_dir(a.state_dir), a.state_url)
        done = keys_ops.change(store, place, keys_ops.Change(a.command, a.name, _limits(a), _others(a), a.wait),
                               keys_ops.cli_user())
    except keys_lock.Conflict as e:
        print(f"qwen-keys: {e}: nothing changed here. See `qwen-keys list`, and run the command again if it is "
              "still wanted.", file=sys.stderr)
        return 1
    except KeyNameError as e:
        print(f"qwen-keys: {e}", file=sys.stderr)
        return 1
    finally:
        store.close()
    for line in done.warned:
        print(line, file=sys.stderr)
    # what was done first, then (recorded, but not every running gateway said it applied it) who did not confirm:
    # flushed, so a terminal or one pipe of both streams reads in that order
    print("\n".join(done.lines()), flush=True)
    if done.status:
        print(f"qwen-keys: {done.applied}", file=sys.stderr)
    return done.status


@quiet_when_stdout_closes
def main(argv: list[str] | None = None) -> int:
    doc = __doc__.split("\n", 1)[1]
    ap = argparse.ArgumentParser(prog="qwen-keys", description=__doc__.split("\n", 1)[0],
                                 epilog=doc.replace("\n    --state-dir", "\n" + BUDGET_HELP + "    --state-dir", 1),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", metavar="DIR", help="the gateway's state folder")
    common.add_argument("--state-url", metavar="URL", default=os.environ.get("QWEN_STATE_URL"),
                        help="the shared PostgreSQL database (default $QWEN_STATE_URL, else the one the folder's "
                             "gateway uses or its keys were moved to: said on stderr); '' the folder's own")
    sub = ap.add_subparsers(dest="command", required=True)
    changes = argparse.ArgumentParser(add_help=False, parents=[common])
    changes.add_argument("--wait", metavar="SECONDS", type=_seconds, default=keys_applied.WAIT_S,
                         help="how long to wait for every running gateway to apply the change (default "
                              f"{keys_applied.WAIT_S:g}; then those that did not are named, exit status 3)")
    for name, text in (("add", "a new key, printed once as the last line"), ("set", "change a key's limits")):
        p = sub.add_parser(name, parents=[changes], help=text)
        p.add_argument("name", type=_name)
        _limits_args(p)
    p = sub.add_parser("list", parents=[common], help="keys, limits and spend")
    p.add_argument("--json", action="store_true", help="print rows as JSON")
    p.add_argument("--wide", action="store_true", help="a column for each limit and count (wider than 100)")
    for name, text in (("revoke", "the key stops working"), ("rotate", "a new key for NAME, printed as the last line"),
                       ("delete", "the key gone for good (its record, spend and stored objects)")):
        sub.add_parser(name, parents=[changes], help=text).add_argument("name", type=_name)
    keys_migrate.add_parser(sub)
    admin_creds.add_parsers(sub, common, _name)
    a = ap.parse_args(argv)
    if a.command == "migrate":
        return keys_migrate.run(ap, a)
    if a.command in admin_creds.COMMANDS:
        return admin_creds.run(a.command, resolve_state_dir(a.state_dir), getattr(a, "name", None))
    a.json, a.wide = getattr(a, "json", False), getattr(a, "wide", False)
    return run(ap, a)


if __name__ == "__main__":
    raise SystemExit(main())
