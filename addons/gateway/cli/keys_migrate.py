"""`qwen-keys migrate`: the named keys, their revocations, limits and spend moved whole between the state folder
and a shared database (tenancy/move.py), and what to do next.

    qwen-keys migrate --to URL              the folder's keys into the database (the folder then says where they
                                            went: a gateway on it refuses to start until pointed there)
    qwen-keys migrate --from URL            the database's keys into the folder (the database keeps its own)
    qwen-keys migrate --from URL --to URL2  from one database to another
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from ..settings.auth import resolve_state_dir
from ..tenancy.move import Moved, MoveRefused, move
from ..tenancy.place import STORE_NOTE
from ..tenancy.store import FILENAME, SNAPSHOT, KeyStore
from ..storage.pg import Database, StateUrlError, shown
from ..storage.pg_faults import cause


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("migrate", help="move the keys, their limits and spend between the folder and a database",
                       description=__doc__.split("\n", 1)[0], epilog=__doc__.split("\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--state-dir", metavar="DIR", help="the gateway's state folder")
    p.add_argument("--to", metavar="URL", dest="to_url", help="the shared PostgreSQL database to move them to")
    p.add_argument("--from", metavar="URL", dest="from_url", help="the shared PostgreSQL database to move them from")


def _remote(url: str) -> KeyStore:
    db = Database(url)  # a URL the gateway would refuse: StateUrlError
    try:
        return KeyStore.remote(db)
    except Exception as e:  # StateUnavailable: the cause is the health's reason
        raise MoveRefused(f"cannot use the shared database {shown(url)}: {db.health.reason or cause(e)}") from None


def _where(url: str | None, folder: Path) -> str:
    return shown(url) if url else str(folder / FILENAME)


def run(ap: argparse.ArgumentParser, a: argparse.Namespace) -> int:
    if not a.to_url and not a.from_url:
        ap.error("migrate: give --to URL (the folder's keys into a database), --from URL (back), or both")
    if a.to_url and a.from_url and shown(a.to_url) == shown(a.from_url):
        ap.error("migrate: --from and --to name the same database")
    folder = resolve_state_dir(a.state_dir)
    if not a.from_url and not (folder / FILENAME).exists():
        print(f"No named keys in {folder / FILENAME}: nothing to move.")
        return 0
    stores: list[KeyStore] = []
    try:
        source = _remote(a.from_url) if a.from_url else KeyStore.local(folder)
        stores.append(source)
        target = _remote(a.to_url) if a.to_url else KeyStore.local(folder)
        stores.append(target)
        done = move(source, target, moved_to=shown(a.to_url) if a.to_url and not a.from_url else None)
    except StateUrlError as e:
        ap.error(str(e))
    except MoveRefused as e:
        ap.exit(1, f"qwen-keys: migrate: {e}\n")
    except Exception as e:  # the database stopped midway, a disk full: rolled back, nothing moved
        ap.exit(1, f"qwen-keys: migrate: nothing was moved: {cause(e)}\n")
    finally:
        for store in stores:
            with contextlib.suppress(Exception):
                store.close()
    if not a.to_url:  # back in the folder: the copy of the database and the note of the gateway's store go
        for path in (folder / SNAPSHOT, Path(f"{folder / SNAPSHOT}-wal"), Path(f"{folder / SNAPSHOT}-shm"),
                     folder / STORE_NOTE):
            path.unlink(missing_ok=True)
    print(_said(done, _where(a.from_url, folder), _where(a.to_url, folder)))
    if a.to_url:
        print("Start the gateways with --set qwen_state_url=URL (this URL); manage the keys with "
              "qwen-keys --state-url URL (or $QWEN_STATE_URL).")
    else:
        print("Start the gateway without qwen_state_url; the database keeps its keys (other gateways may use it).")
    return 0


def _said(done: Moved, source: str, target: str) -> str:
    n = done.active + done.revoked
    line = (f"Moved {n} named key{'' if n == 1 else 's'} ({done.active} active, {done.revoked} revoked), their "
            f"limits and {done.days} day{'' if done.days == 1 else 's'} of spend from {source} to {target}")
    if done.there:
        line += f"; {done.there} {'was' if done.there == 1 else 'were'} there already"
    return line + "."
