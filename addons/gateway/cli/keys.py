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
import sqlite3
import json
import os
import re
import sys
import time

from ..stores.responses_schema import FORGET_OWNER, forget_owner
from ..settings.auth import resolve_state_dir
from ..tenancy import budgets
from ..tenancy.shared_copy import KeyCopy
from ..tenancy.ring import digest, new_key
from ..tenancy.store import FILENAME, SNAPSHOT, KeyNameError, KeyStore
from ..storage.pg import Database, StateUrlError, shown
from . import keys_applied, keys_lock, keys_migrate, usage_store
from .keys_list import described, rows, table
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
    out: dict[str, float] = {k: getattr(a, k) for k in ("rpm", "tpm") if getattr(a, k) is not None}
    for b in budgets.BUDGETS:
        if b.column and (given := getattr(a, b.field)) is not None:
            out[b.column] = int(given[1]) if b.counts == budgets.TOKENS else given[1]
    return out


def _others(a: argparse.Namespace) -> dict[str, list[tuple[str, float]]]:
    """The other budgets given: {flag: [(model or "", amount)]} (tenancy/budgets.py `merged`)."""
    return {b.flag: given if b.per_model else [given] for b in budgets.BUDGETS
            if not b.column and (given := getattr(a, b.field)) is not None}


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


def _where(a: argparse.Namespace) -> str:
    return "the shared database" if a.state_url else str(resolve_state_dir(a.state_dir) / FILENAME)


def run(ap: argparse.ArgumentParser, a: argparse.Namespace) -> int:
    store = _open(ap, a, create=a.command != "list")
    if store is None:
        print(json.dumps([]) if a.json else table([]))
        return 0
    status = 0
    try:
        if a.command == "list":
            items = rows(store)
            print(json.dumps(items, indent=2) if a.json else table(items, a.wide))
            return 0
        asked = store.version(a.name)  # the key as this command found it, before its turn
        with keys_lock.turn(resolve_state_dir(a.state_dir), Database(a.state_url) if a.state_url else None, a.name,
                            a.wait + keys_lock.TURN_EXTRA_S):
            if store.version(a.name) != asked:
                raise keys_lock.Conflict(f"another qwen-keys command changed key {a.name!r} while this one waited")
            status = _change(ap, a, store)
    except keys_lock.Conflict as e:
        print(f"qwen-keys: {e}: nothing changed here. See `qwen-keys list`, and run the command again if it is "
              "still wanted.", file=sys.stderr)
        return 1
    except KeyNameError as e:
        print(f"qwen-keys: {e}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return status


def _change(ap: argparse.ArgumentParser, a: argparse.Namespace, store: KeyStore) -> int:
    """The change, recorded and confirmed by every running gateway, and said: the exit status."""
    key = ""
    if a.command == "add":
        key = new_key()
        store.add(a.name, digest(key.encode()), _limits(a), budgets.encode(budgets.merged(None, _others(a))))
        rec = store.key(a.name)
        assert rec is not None
        said = [f"Added key {a.name} ({described(rec)}) to {_where(a)}.",
                "The key is shown once, here; only its SHA-256 is stored. Clients send it as their API key:"]
    elif a.command == "set":
        if not _limits(a) and not _others(a):
            ap.error("set: give at least one of --rpm, --tpm, " + ", ".join(f"--{b.flag}" for b in budgets.BUDGETS
                                                                            if b.column) + " (0 removes a limit)"
                     + "".join(f", {b.option('MODEL', 'X')} ({b.option('MODEL', '0').split()[1]} removes it)"
                               for b in budgets.BUDGETS if not b.column))
        values: dict[str, object] = {**_limits(a)}
        if _others(a):  # merged with the key's others (a race with another qwen-keys set: the last one wins)
            values["budgets"] = budgets.encode(budgets.merged(store.key(a.name), _others(a)))
        said = [f"Key {a.name}: {described(store.update(a.name, **values))}."]
    elif a.command == "revoke":
        store.update(a.name, revoked=time.time())
        said = [f"Revoked key {a.name}: gateways refuse it (401)."]
    elif a.command == "rotate":
        key = new_key()
        old = store.key(a.name)
        store.update(a.name, digest=digest(key.encode()).hex(), revoked=None)
        said = [f"New key for {a.name}" + (" (it was revoked: active again)" if old and old.revoked else "")
                + "; the old key no longer works.", "The new key is shown once, here:"]
    elif a.command == "delete":
        store.delete(a.name)
        gone = forget_stored(a, a.name)
        said = [f"Deleted key {a.name}: its record and spend are gone, and its {gone} stored objects (the usage "
                "ledger keeps its requests); gateways refuse it (401)."]
        if not store.keys():
            said.append("No named key is left: running gateways no longer require one (on loopback; the keys of "
                        "qwen_client_keys_file still work).")
    if a.state_url:
        _keep_copy(a, store)
    applied, status = (keys_applied.in_database(store.conn, a.name, a.wait) if a.state_url else
                       keys_applied.in_folder(resolve_state_dir(a.state_dir), a.wait))
    if not status:
        said.insert(len(said) - 1 if key else len(said), applied)  # the key stays the last line
    # what was done first, then (recorded, but not every running gateway said it applied it) who did not confirm:
    # flushed, so a terminal or one pipe of both streams reads in that order
    print("\n".join(said + ([key] if key else [])), flush=True)
    if status:
        print(f"qwen-keys: {applied}", file=sys.stderr)
    return status


def forget_stored(a: argparse.Namespace, name: str) -> int:
    """The deleted key's stored Responses and chat completions (docs/keys.md#stored-objects-each-keys-own),
    in the state folder and the shared database: a key added later under that name starts with none."""
    gone = 0
    local = resolve_state_dir(a.state_dir) / "responses.sqlite3"
    if local.exists():
        db = sqlite3.connect(local, timeout=10)
        try:
            gone += forget_owner(db, name)
        except sqlite3.OperationalError as e:  # a file of an older gateway (no owners): nothing of a name in it
            if "no such column" not in str(e) and "no such table" not in str(e):
                raise
        finally:
            db.close()
    if a.state_url:
        with Database(a.state_url).connect() as conn:
            for sql in FORGET_OWNER:
                try:
                    cur = conn.execute(sql.replace("?", "%s"), (name,))
                except Exception as e:  # psycopg's UndefinedTable/Column: a database no gateway has stored in
                    if getattr(e, "sqlstate", "") not in ("42P01", "42703"):
                        raise
                    continue
                gone += cur.rowcount if sql.startswith(("DELETE FROM responses ", "DELETE FROM chat_comp")) else 0
    return gone


def _keep_copy(a: argparse.Namespace, store: KeyStore) -> None:
    """The copy of the shared keys a gateway keeps in this state folder (tenancy/shared_copy.py), when there is one:
    a gateway stopped now restarts with the change even while the database is down."""
    copy = KeyCopy(resolve_state_dir(a.state_dir) / SNAPSHOT, shown(a.state_url))
    if copy.path.exists():
        try:
            copy.write(store.keys())
        except Exception as e:
            print(f"qwen-keys: could not update {copy.path}: {type(e).__name__} (the gateway there updates it "
                  "when it hears of the change)", file=sys.stderr)


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
    a = ap.parse_args(argv)
    if a.command == "migrate":
        return keys_migrate.run(ap, a)
    a.json, a.wide = getattr(a, "json", False), getattr(a, "wide", False)
    return run(ap, a)


if __name__ == "__main__":
    raise SystemExit(main())
