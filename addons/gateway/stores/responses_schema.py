"""The state folder's stored objects as SQLite tables (stored Responses and their items, stored chat completions),
whose they are, and how long they are kept.

Every stored object has an `owner`: the named client key (qwen-keys) that stored it, '' for none (a gateway
without named keys, or a flat key of qwen_client_keys_file). Only its owner reads, continues, changes or
deletes it. A file written before owners existed is brought up to date when it is opened (`migrate`): its
rows belong to no key, as they were stored.

Retention, per owner (never one cap shared by every key): each keeps its newest PER_KEY Responses and its
newest PER_KEY chat completions, and nothing older than MAX_AGE_S (OpenAI keeps stored objects 30 days). A
write that takes its owner over the cap drops that owner's oldest; once the oldest object is past its age,
each write also drops up to EXPIRE_PER_WRITE of those (so they go faster than new ones come; the writer
knows when the oldest comes due, so until then a write asks nothing more): work that does not grow with
the store."""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass

PER_KEY = 10_000  # stored Responses, and stored chat completions, an owner keeps (its newest)
MAX_AGE_S = 30 * 86400  # OpenAI's 30 days
EXPIRE_PER_WRITE = 2  # objects past MAX_AGE_S dropped by each write

TABLES = """
CREATE TABLE IF NOT EXISTS responses (id TEXT PRIMARY KEY, created REAL, response TEXT, history TEXT,
    owner TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS response_inputs (id TEXT PRIMARY KEY, items TEXT);
CREATE TABLE IF NOT EXISTS response_items (id TEXT, response_id TEXT, item TEXT, owner TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (owner, id));
CREATE TABLE IF NOT EXISTS chat_completions (id TEXT PRIMARY KEY, created REAL, model TEXT, metadata TEXT,
    completion TEXT, messages TEXT, owner TEXT NOT NULL DEFAULT '');
"""
_INDEXES = """
CREATE INDEX IF NOT EXISTS response_items_by_response ON response_items (response_id);
CREATE INDEX IF NOT EXISTS responses_by_owner ON responses (owner);
CREATE INDEX IF NOT EXISTS responses_by_age ON responses (created);
CREATE INDEX IF NOT EXISTS chat_completions_by_owner ON chat_completions (owner);
CREATE INDEX IF NOT EXISTS chat_completions_by_age ON chat_completions (created);
"""
# an item's id is the client's to choose (two keys may both send "msg_1"): it is unique per owner, so the
# table written before owners (id alone the key) is made again, its rows kept as no key's
_ITEMS_AGAIN = ("ALTER TABLE response_items RENAME TO response_items_before_owners",
                "CREATE TABLE response_items (id TEXT, response_id TEXT, item TEXT, owner TEXT NOT NULL DEFAULT '', "
                "PRIMARY KEY (owner, id))",
                "INSERT INTO response_items (id, response_id, item) "
                "SELECT id, response_id, item FROM response_items_before_owners",
                "DROP TABLE response_items_before_owners")


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def migrate(db: sqlite3.Connection) -> None:
    """A file of an older gateway brought up to date (at most once: another connection or process that gets
    there first leaves nothing to do), then the indexes."""
    if all("owner" in _columns(db, t) for t in ("responses", "response_items", "chat_completions")):
        db.executescript(_INDEXES)
        return
    db.execute("BEGIN IMMEDIATE")  # one at a time; checked again inside
    try:
        if "owner" not in _columns(db, "response_items"):
            for sql in _ITEMS_AGAIN:
                db.execute(sql)
        for table in ("responses", "chat_completions"):
            if "owner" not in _columns(db, table):
                db.execute(f"ALTER TABLE {table} ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    db.executescript(_INDEXES)


@dataclass
class OldestDue:
    """When the oldest object of `table` passes MAX_AGE_S, as its writer knows it (the writer's lock held)."""

    table: str
    due: float = math.inf

    def read(self, db: sqlite3.Connection) -> None:
        """When the oldest object in the file comes due (once, when the writer opens it: the age index)."""
        oldest = db.execute(f"SELECT min(created) FROM {self.table}").fetchone()[0]
        self.due = oldest + MAX_AGE_S if oldest is not None else math.inf

    def stored(self, created: float) -> None:
        self.due = min(self.due, created + MAX_AGE_S)

    def take(self, db: sqlite3.Connection, now: float) -> tuple[list[tuple[str, str]], float]:
        """(id, owner) of up to EXPIRE_PER_WRITE objects past their age (none asked for before `due`), and when
        the oldest left comes due (for `due` once the write is committed)."""
        if now < self.due:
            return [], self.due
        oldest = db.execute(f"SELECT id, owner, created FROM {self.table} ORDER BY created LIMIT ?",
                            (EXPIRE_PER_WRITE + 1,)).fetchall()
        gone = [(i, owner) for i, owner, created in oldest[:EXPIRE_PER_WRITE] if created < now - MAX_AGE_S]
        left = oldest[len(gone):]
        return gone, left[0][2] + MAX_AGE_S if left else math.inf


def counts(db: sqlite3.Connection, table: str) -> dict[str, int]:
    """Objects per owner (read once, when the writer opens the file; the writer keeps them after)."""
    return dict(db.execute(f"SELECT owner, count(*) FROM {table} GROUP BY owner").fetchall())


# Every stored object of one owner (`qwen-keys delete`: a name deleted is gone for good, so a key added later
# under the same name never reads what the deleted one stored). The same statements on the shared database.
FORGET_OWNER = (
    "DELETE FROM response_inputs WHERE id IN (SELECT id FROM responses WHERE owner = ?)",
    "DELETE FROM response_items WHERE owner = ?",
    "DELETE FROM responses WHERE owner = ?",
    "DELETE FROM chat_completions WHERE owner = ?",
)


def forget_owner(db: sqlite3.Connection, owner: str) -> int:
    """Delete `owner`'s stored objects from a state folder's file; how many Responses and completions went."""
    gone = 0
    with db:
        for sql in FORGET_OWNER:
            n = db.execute(sql, (owner,)).rowcount
            gone += n if sql.startswith(("DELETE FROM responses ", "DELETE FROM chat_completions")) else 0
    return gone
