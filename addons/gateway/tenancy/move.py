"""`qwen-keys migrate`: the named keys moved whole — each key's record (digest, limits, when it was made, changed
and revoked) and every day of its spend (on each model too) — from the state folder's keys.sqlite3 to a shared
database, back, or from one database to another, with nothing half way.

- The source is held for the whole move (SQLite: BEGIN IMMEDIATE, so a gateway on the folder waits to write its
  spend; PostgreSQL: one REPEATABLE READ snapshot) and read whole, then written into the target in one
  transaction: a failure anywhere — the database stopped, the command killed — rolls it back, and the source is
  as it was.
- Only once the target has committed is a folder source emptied, in its own transaction, with a note saying
  where its keys went (tenancy/place.py: a gateway on the folder then refuses to start; one running there refuses
  every request). Cut between the two commits, both places hold the same keys — the key check is the same wherever the
  gateway starts — and the move run again finds them there and finishes.
- A key the target holds already with the same name and key is not written again, nor its days of spend (run
  again, nothing is counted twice); the same name with another key, or active where the source revoked it, is
  a conflict: nothing moves, and the names are said.
- A database source keeps its keys: other gateways may still use it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from .budget_sql import MODEL_DAY_ROW
from .schema import DAY_ROW, KEY_ROW, MOVED_TO, write_note
from .store import KeyStore

_MARKS = ", ".join("?" * len(KEY_ROW.split(",")))
_DAY_MARKS = ", ".join("?" * len(DAY_ROW.split(",")))
_MODEL_DAY_MARKS = ", ".join("?" * len(MODEL_DAY_ROW.split(",")))


class MoveRefused(Exception):
    """Nothing was moved; the message says why."""


@dataclass
class Moved:
    active: int = 0  # keys written into the target
    revoked: int = 0
    there: int = 0  # keys the target held already (the same name and key)
    days: int = 0  # days of spend written


@contextlib.contextmanager
def _held(store: KeyStore, *, write: bool) -> Iterator[None]:
    """One transaction on `store`: a snapshot to read, or the write lock (SQLite) taken at once."""
    if store.shared:
        with store.conn.transaction():
            if not write:
                store.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            yield
        return
    store.conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        store.conn.execute("ROLLBACK")
        raise
    store.conn.execute("COMMIT")


def move(source: KeyStore, target: KeyStore, *, moved_to: str | None = None) -> Moved:
    """Every key and day of spend of `source` into `target`. `moved_to` (a folder source): the database the
    folder's keys go to, noted in it once they are there, its own keys and spend removed. A folder target loses
    any such note of its own (its keys are back)."""
    if moved_to is not None and (source.shared or source.copy_of is not None):
        raise MoveRefused("the state folder cannot be written: its keys would stay behind as well")
    with _held(source, write=moved_to is not None):
        keys = source.select(f"SELECT {KEY_ROW} FROM client_keys ORDER BY name")
        days = source.select(f"SELECT {DAY_ROW} FROM key_day ORDER BY name, day")
        model_days = source.select(f"SELECT {MODEL_DAY_ROW} FROM key_model_day ORDER BY name, model, day")
        done = Moved()
        with _held(target, write=True):
            held = {r[0]: (r[1], r[2] is not None) for r in target.select("SELECT name, digest, revoked FROM client_keys")}
            conflicts = [r[0] for r in keys if r[0] in held
                         and (held[r[0]][0] != r[1] or (r[8] is not None and not held[r[0]][1]))]
            if conflicts:
                raise MoveRefused(f"the target holds other keys under the names {', '.join(conflicts[:10])} (or holds "
                                  "them active where the source revoked them): nothing was moved; delete or rename "
                                  "one side's first")
            for row in keys:
                if row[0] in held:
                    done.there += 1
                    continue
                target.execute(f"INSERT INTO client_keys ({KEY_ROW}) VALUES ({_MARKS})", tuple(row))
                done.revoked += row[8] is not None
                done.active += row[8] is None
            for row in days:  # a day the target has already is its own (a move run again): not added twice
                done.days += target.execute(f"INSERT INTO key_day ({DAY_ROW}) VALUES ({_DAY_MARKS}) "
                                            "ON CONFLICT (name, day) DO NOTHING", tuple(row))
            for row in model_days:  # what each key spent on each model, alike
                target.execute(f"INSERT INTO key_model_day ({MODEL_DAY_ROW}) VALUES ({_MODEL_DAY_MARKS}) "
                               "ON CONFLICT (name, model, day) DO NOTHING", tuple(row))
            if not target.shared:
                write_note(target.conn, MOVED_TO, None)
            for row in keys:
                target.notify(row[0])  # running gateways on the database read the key at once
        if moved_to is not None:
            source.execute("DELETE FROM client_keys")
            source.execute("DELETE FROM key_day")
            source.execute("DELETE FROM key_model_day")
            write_note(source.conn, MOVED_TO, moved_to)
    return done
