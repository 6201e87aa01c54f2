"""The state folder's stored objects as SQLite tables (stores/responses_schema.py): a file from before owners
brought up to date with its rows kept as no key's, the oldest object's due time, and one owner forgotten."""

from __future__ import annotations

import math
import sqlite3

import pytest

from qwen_gateway.stores import responses_schema as schema

BEFORE_OWNERS = """
CREATE TABLE responses (id TEXT PRIMARY KEY, created REAL, response TEXT, history TEXT);
CREATE TABLE response_inputs (id TEXT PRIMARY KEY, items TEXT);
CREATE TABLE response_items (id TEXT PRIMARY KEY, response_id TEXT, item TEXT);
CREATE TABLE chat_completions (id TEXT PRIMARY KEY, created REAL, model TEXT, metadata TEXT, completion TEXT,
    messages TEXT);
INSERT INTO responses VALUES ('resp_old', 1.0, '{}', '{}');
INSERT INTO response_items VALUES ('msg_1', 'resp_old', '{}');
"""


@pytest.fixture
def db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(schema.TABLES)
    return conn


def test_a_file_from_before_owners_keeps_its_rows_as_no_keys():
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.executescript(BEFORE_OWNERS)
    schema.migrate(db)
    assert db.execute("SELECT id, owner FROM responses").fetchall() == [("resp_old", "")]
    assert db.execute("SELECT id, response_id, owner FROM response_items").fetchall() == [("msg_1", "resp_old", "")]
    # an item id is unique per owner now: another key may choose the same
    db.execute("INSERT INTO response_items VALUES ('msg_1', 'resp_new', '{}', 'alice')")
    schema.migrate(db)  # a second time: nothing to do
    assert db.execute("SELECT count(*) FROM response_items").fetchone() == (2,)


def test_nothing_stored_is_never_due(db):
    due = schema.OldestDue("responses")
    due.read(db)
    assert due.due == math.inf and due.take(db, 1e12) == ([], math.inf)


def test_the_oldest_object_comes_due_after_max_age(db):
    db.execute("INSERT INTO responses (id, created, owner) VALUES ('a', 100.0, 'alice'), ('b', 200.0, '')")
    due = schema.OldestDue("responses")
    due.read(db)
    assert due.due == 100.0 + schema.MAX_AGE_S
    due.stored(50.0)
    assert due.due == 50.0 + schema.MAX_AGE_S


def test_before_its_due_time_a_write_asks_nothing(db):
    due = schema.OldestDue("responses", due=1000.0)
    db.execute("DROP TABLE responses")  # no query is made: it would fail
    assert due.take(db, 999.0) == ([], 1000.0)


def test_a_write_takes_at_most_a_few_objects_past_their_age(db):
    for n in range(4):
        db.execute("INSERT INTO responses (id, created, owner) VALUES (?, ?, ?)", (f"r{n}", float(n), f"o{n}"))
    now = 10.0 + schema.MAX_AGE_S
    gone, next_due = schema.OldestDue("responses", due=0.0).take(db, now)
    assert gone == [("r0", "o0"), ("r1", "o1")] and len(gone) == schema.EXPIRE_PER_WRITE
    assert next_due == 2.0 + schema.MAX_AGE_S


def test_objects_are_counted_per_owner(db):
    db.execute("INSERT INTO chat_completions (id, created, owner) VALUES ('a', 1, 'x'), ('b', 1, 'x'), ('c', 1, '')")
    assert schema.counts(db, "chat_completions") == {"x": 2, "": 1}


def test_forgetting_an_owner_deletes_its_objects_only(db):
    db.executescript("""
        INSERT INTO responses (id, created, owner) VALUES ('r1', 1, 'bob'), ('r2', 1, 'alice');
        INSERT INTO response_inputs VALUES ('r1', '[]'), ('r2', '[]');
        INSERT INTO response_items (id, response_id, item, owner) VALUES ('i', 'r1', '{}', 'bob'), ('i', 'r2', '{}', 'alice');
        INSERT INTO chat_completions (id, created, owner) VALUES ('c1', 1, 'bob');
    """)
    assert schema.forget_owner(db, "bob") == 2  # one response, one completion
    assert db.execute("SELECT id FROM responses").fetchall() == [("r2",)]
    assert db.execute("SELECT id FROM response_inputs").fetchall() == [("r2",)]
    assert db.execute("SELECT owner FROM response_items").fetchall() == [("alice",)]
    assert db.execute("SELECT count(*) FROM chat_completions").fetchone() == (0,)
