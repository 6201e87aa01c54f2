"""The key operations, one implementation for `qwen-keys` (cli/keys.py) and the admin API (cli/admin_api.py): a
change of one key made in its turn (cli/keys_lock.py), recorded, confirmed by every running gateway
(cli/keys_applied.py) and said in qwen-keys' words; who made it written to the folder's journal of key changes.

A caller opens the store (`KeyStore`) where the gateways read it — the folder or the shared database — and hands
it to `change` with a `Place` saying which; what comes back (`Done`) is what qwen-keys prints and its exit
status, and what the admin API answers."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..storage.pg import Database, shown
from ..stores.responses_schema import FORGET_OWNER, forget_owner
from ..tenancy import budgets
from ..tenancy.ring import digest, new_key
from ..tenancy.shared_copy import KeyCopy
from ..tenancy.store import FILENAME, SNAPSHOT, KeyStore
from . import keys_applied, keys_lock
from .keys_list import described

COMMANDS = ("add", "set", "revoke", "rotate", "delete")
JOURNAL = "key-changes.jsonl"  # one JSON line per change made here: when, who, what (never a key)


@dataclass(frozen=True)
class Place:
    """Where the keys are: the state folder, and the shared database's URL when the gateways use one."""

    state_dir: Path
    state_url: str | None = None

    @property
    def where(self) -> str:
        return "the shared database" if self.state_url else str(self.state_dir / FILENAME)


@dataclass(frozen=True)
class Change:
    """One command on one key: `limits` rpm, tpm and the budgets with a column; `others` the other budgets
    given, {flag: [(model or "", amount)]} (tenancy/budgets.py `merged`)."""

    command: str
    name: str
    limits: dict[str, float] = field(default_factory=dict)
    others: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    wait: float = keys_applied.WAIT_S


@dataclass
class Done:
    """What a change did: the lines qwen-keys prints (the new key not among them), the key (shown once), the
    line of who applied it, the gateways that did not confirm it, and the exit status (0, or NOT_EVERYWHERE)."""

    said: list[str]
    key: str
    applied: str
    silent: list[str]
    status: int
    warned: list[str] = field(default_factory=list)  # stderr, before the rest: a copy of the keys not updated

    def lines(self) -> list[str]:
        """stdout: what was done, who applied it when all did, the key last."""
        out = list(self.said)
        if not self.status:
            out.insert(len(out) - 1 if self.key else len(out), self.applied)
        return out + ([self.key] if self.key else [])


def open_store(place: Place) -> KeyStore:
    """The store the gateways read: the shared database's, else the folder's keys file."""
    return KeyStore.remote(Database(place.state_url)) if place.state_url else KeyStore.local(place.state_dir)


def change(store: KeyStore, place: Place, ch: Change, by: str) -> Done:
    """`ch` made in its key's turn: `keys_lock.Conflict` if another command changed the key while this one waited,
    `KeyNameError` (`NoSuchKey`) for a name that exists or does not as the command needs."""
    asked = store.version(ch.name)  # the key as this command found it, before its turn
    with keys_lock.turn(place.state_dir, Database(place.state_url) if place.state_url else None, ch.name,
                        ch.wait + keys_lock.TURN_EXTRA_S):
        if store.version(ch.name) != asked:
            raise keys_lock.Conflict(f"another qwen-keys command changed key {ch.name!r} while this one waited")
        done = _made(store, place, ch)
    journal(place.state_dir, by, ch, done)
    return done


def _made(store: KeyStore, place: Place, ch: Change) -> Done:
    key, name = "", ch.name
    if ch.command == "add":
        key = new_key()
        store.add(name, digest(key.encode()), ch.limits, budgets.encode(budgets.merged(None, ch.others)))
        rec = store.key(name)
        assert rec is not None
        said = [f"Added key {name} ({described(rec)}) to {place.where}.",
                "The key is shown once, here; only its SHA-256 is stored. Clients send it as their API key:"]
    elif ch.command == "set":
        values: dict[str, object] = {**ch.limits}
        if ch.others:  # merged with the key's others (a race with another qwen-keys set: the last one wins)
            values["budgets"] = budgets.encode(budgets.merged(store.key(name), ch.others))
        said = [f"Key {name}: {described(store.update(name, **values))}."]
    elif ch.command == "revoke":
        store.update(name, revoked=time.time())
        said = [f"Revoked key {name}: gateways refuse it (401)."]
    elif ch.command == "rotate":
        key = new_key()
        old = store.key(name)
        store.update(name, digest=digest(key.encode()).hex(), revoked=None)
        said = [f"New key for {name}" + (" (it was revoked: active again)" if old and old.revoked else "")
                + "; the old key no longer works.", "The new key is shown once, here:"]
    elif ch.command == "delete":
        store.delete(name)
        gone = forget_stored(place, name)
        said = [f"Deleted key {name}: its record and spend are gone, and its {gone} stored objects (the usage "
                "ledger keeps its requests); gateways refuse it (401)."]
        if not store.keys():
            said.append("No named key is left: running gateways no longer require one (on loopback; the keys of "
                        "qwen_client_keys_file still work).")
    else:
        raise ValueError(f"not a key command: {ch.command!r}")
    warned = _keep_copy(place, store) if place.state_url else []
    applied, silent, status = (keys_applied.confirmed_in_database(store.conn, name, ch.wait) if place.state_url else
                               keys_applied.confirmed_in_folder(place.state_dir, ch.wait))
    return Done(said, key, applied, silent, status, warned)


def _keep_copy(place: Place, store: KeyStore) -> list[str]:
    """The copy of the shared keys a gateway keeps in this state folder (tenancy/shared_copy.py), when there is one:
    a gateway stopped now restarts with the change even while the database is down. What went wrong, said."""
    copy = KeyCopy(place.state_dir / SNAPSHOT, shown(place.state_url or ""))
    if copy.path.exists():
        try:
            copy.write(store.keys())
        except Exception as e:
            return [f"qwen-keys: could not update {copy.path}: {type(e).__name__} (the gateway there updates it "
                    "when it hears of the change)"]
    return []


def forget_stored(place: Place, name: str) -> int:
    """The deleted key's stored Responses and chat completions (docs/keys.md#stored-objects-each-keys-own),
    in the state folder and the shared database: a key added later under that name starts with none."""
    gone = 0
    local = place.state_dir / "responses.sqlite3"
    if local.exists():
        db = sqlite3.connect(local, timeout=10)
        try:
            gone += forget_owner(db, name)
        except sqlite3.OperationalError as e:  # a file of an older gateway (no owners): nothing of a name in it
            if "no such column" not in str(e) and "no such table" not in str(e):
                raise
        finally:
            db.close()
    if place.state_url:
        with Database(place.state_url).connect() as conn:
            for sql in FORGET_OWNER:
                try:
                    cur = conn.execute(sql.replace("?", "%s"), (name,))
                except Exception as e:  # psycopg's UndefinedTable/Column: a database no gateway has stored in
                    if getattr(e, "sqlstate", "") not in ("42P01", "42703"):
                        raise
                    continue
                gone += cur.rowcount if sql.startswith(("DELETE FROM responses ", "DELETE FROM chat_comp")) else 0
    return gone


def journal(state_dir: Path, by: str, ch: Change, done: Done) -> None:
    """One line in the folder's journal of key changes (0600, appended): when, who (a name, never a secret),
    the command, the key's name, and whether every running gateway confirmed it. A folder that cannot be
    written keeps no journal: the change itself stands."""
    line = json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "by": by, "command": ch.command,
                       "name": ch.name, "confirmed": not done.status, "unconfirmed": done.silent})
    try:
        fd = os.open(state_dir / JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError:
        return
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def cli_user() -> str:
    """Who ran qwen-keys, as the journal names them."""
    try:
        user = os.getlogin()
    except OSError:
        user = os.environ.get("USER") or str(os.getuid())
    return f"qwen-keys ({user})"
