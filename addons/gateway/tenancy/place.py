"""Where the named keys live — the state folder's keys.sqlite3, or the shared database of `qwen_state_url` — and a
change of it that would let keyless requests in: a gateway whose folder held keys, restarted on a database without them,
served requests that had no key.

The rule: the keys a gateway is about to enforce hold every key it knows of from where it was — the same name
and key (digest), revoked where it was revoked. What it knows of:

- on a database: the folder's keys.sqlite3 (unless `qwen-keys migrate` moved them: the file then says where,
  and holds none), and its copy of another database's keys (keys-shared.sqlite3 says which database it copies);
- on the folder: its copy of a database's keys (a gateway that ran on one, pointed back), and a keys file whose
  keys were moved to a database (refused outright: they are there);
- at run time (an option changed through mitmweb's options, `:set`): the keys it enforces now, too.

What is missing — or a place that cannot be read to tell — is refused: at start one line and exit 2, at run
time the option's previous value kept. A gateway that knows of no key (one place, never moved: the usual
case) reads nothing here. `store_note` keeps, in the folder, the store its gateway last started on
(`gateway-store.json`), which `qwen-keys` reads to say when that is not the folder."""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..storage.pg import CONNECT_S, deadline, shown
from ..storage.pg_faults import cause, connection
from .ring import Keyring, KeyRecord
from .schema import COPY_OF, FIRST_KEY_COLUMNS, MOVED_TO, read_note, record_of
from .store import FILENAME, SNAPSHOT, KeyStore

if TYPE_CHECKING:
    from ..settings.config import Config

STORE_NOTE = "gateway-store.json"
GUIDE = "docs/keys.md#moving-keys-to-a-database-and-back"


@dataclass(frozen=True)
class Held:
    """A keys file's keys, and its note (value, when)."""

    keys: tuple[KeyRecord, ...] = ()
    note: tuple[str, float] | None = None


def read_file(path: Path, note: str) -> Held | None:
    """The keys and the note of a keys file (None: there is none); blocking, a read-only folder read too."""
    if not path.exists():
        return None
    store = KeyStore.local(path.parent, path.name)
    try:
        return Held(store.keys(), read_note(store.conn, note))
    finally:
        store.close()


def read_database(url: str) -> tuple[KeyRecord, ...]:
    """Blocking, one connection of its own (the stores' pools and outages untouched): the database's keys, none
    when no gateway made its tables yet."""
    with connection(url, CONNECT_S) as conn, deadline(conn):
        try:
            rows = conn.execute(f"SELECT {FIRST_KEY_COLUMNS} FROM client_keys").fetchall()  # any release's table
        except Exception as e:
            if getattr(e, "sqlstate", None) == "42P01":  # undefined_table
                return ()
            raise
    return tuple(record_of(r) for r in rows)


def missing(keep: tuple[KeyRecord, ...], there: tuple[KeyRecord, ...]) -> list[KeyRecord]:
    """The keys of `keep` that `there` does not hold as they are: same name and key, revoked if revoked."""
    held = {r.name: r for r in there}
    return [k for k in keep if (h := held.get(k.name)) is None or h.digest != k.digest or (k.revoked and not h.revoked)]


def listed(keys: list[KeyRecord] | tuple[KeyRecord, ...]) -> str:
    names = [k.name + (" (revoked)" if k.revoked else "") for k in sorted(keys, key=lambda k: k.name)]
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _count(n: int) -> str:
    return f"{n} named client key{'' if n == 1 else 's'}"


def refusal(config: Config, ring: Keyring, was: tuple[Path, str] | None) -> str | None:
    """Why the gateway must not take its keys from `config`'s place (one line), or None. `was`: the place it
    takes them from now (None at start); `ring`: the keys it enforces there."""
    folder_dir, url = config.state_dir, config.state_url
    if was == (folder_dir, url):
        return None
    here = shown(url) if url else ""
    folder = read_file(folder_dir / FILENAME, MOVED_TO)
    copy = read_file(folder_dir / SNAPSHOT, COPY_OF)
    sources: list[tuple[tuple[KeyRecord, ...], str]] = []  # (keys to keep, what to say and run when they are not)
    target = f"the shared database {here}" if url else f"its state folder's {FILENAME} ({folder_dir})"
    if was is not None and ring.loaded and ring.records:
        sources.append((ring.records, f"it enforces {{keys}} that {target} does not hold: there they would not be "
                                      f"asked for. Move them first with qwen-keys migrate ({GUIDE})"))
    if url:
        if folder is not None and folder.keys:
            sources.append((folder.keys, f"its state folder {folder_dir} holds {{keys}} in {FILENAME} that {target} "
                                         "does not: there they would not be asked for. Move them there first: "
                                         f"qwen-keys migrate --state-dir {folder_dir} --to URL (URL: the value of "
                                         f"qwen_state_url), then start the gateway again ({GUIDE})"))
        if copy is not None and copy.note is not None and copy.note[0] != here:
            sources.append((copy.keys, f"it last enforced {{keys}} of the shared database {copy.note[0]} (its copy "
                                       f"{folder_dir / SNAPSHOT}) that {target} does not hold: copy them with "
                                       f"qwen-keys migrate --from URL --to URL, or remove that copy to start "
                                       f"without them ({GUIDE})"))
    else:
        if folder is not None and folder.note is not None and not folder.keys:
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(folder.note[1]))
            return (f"the named client keys of its state folder {folder_dir} were moved to the shared database "
                    f"{folder.note[0]} on {when} (qwen-keys migrate): set qwen_state_url to it, or bring them back "
                    f"with qwen-keys migrate --state-dir {folder_dir} --from URL ({GUIDE})")
        if copy is not None and copy.keys:
            of = copy.note[0] if copy.note else "a shared database"
            sources.append((copy.keys, f"it last enforced {{keys}} of {of} (its copy {folder_dir / SNAPSHOT}) that "
                                       f"{target} does not hold: without qwen_state_url they would not be asked "
                                       f"for. Bring them with qwen-keys migrate --state-dir {folder_dir} --from URL, "
                                       f"set qwen_state_url again, or remove that copy to start without them "
                                       f"({GUIDE})"))
    sources = [(keys, said) for keys, said in sources if keys]
    if not sources:
        return None
    try:
        there = read_database(url) if url else folder.keys if folder is not None else ()
    except Exception as e:
        keys = tuple({k.name: k for keys, _ in sources for k in keys}.values())
        return (f"could not read {target} to check that it holds the {_count(len(keys))} this gateway knows of "
                f"({listed(keys)}): {cause(e)}")
    for keys, said in sources:
        if gone := missing(keys, there):
            return said.replace("{keys}", f"{_count(len(gone))} ({listed(gone)})", 1)
    return None


# ---- the store a folder's gateway uses, for qwen-keys ----------------------------------------------------------


def store_note(state_dir: Path, url: str) -> None:
    """At start: which store the gateway on this folder uses (`gateway-store.json`, 0600), written only when it
    is a database, removed when it is the folder. A folder that cannot be written keeps what it had."""
    path = state_dir / STORE_NOTE
    with contextlib.suppress(OSError):
        if not url:
            path.unlink(missing_ok=True)
            return
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{STORE_NOTE}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"state_url": shown(url), "since": time.time()}, f)
        os.replace(tmp, path)


def gateway_store(state_dir: Path) -> tuple[str, float] | None:
    """The database the folder's gateway uses (as logs show it), and since when; None: the folder (or no note)."""
    try:
        note = json.loads((state_dir / STORE_NOTE).read_text())
        return str(note["state_url"]), float(note["since"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def moved_to(state_dir: Path) -> tuple[str, float] | None:
    """The database the folder's keys were moved to (`qwen-keys migrate`'s note, when the folder has no key left),
    and when; None: they were not (or there is no keys file). Read-only."""
    held = read_file(state_dir / FILENAME, MOVED_TO) if (state_dir / FILENAME).exists() else None
    return held.note if held is not None and held.note is not None and not held.keys else None
