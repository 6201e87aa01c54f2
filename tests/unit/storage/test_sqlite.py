"""The state folder's SQLite files (storage/sqlite.py): private to their owner, in WAL mode, and a
transaction's statements committed together or not at all."""

from __future__ import annotations

import stat
import threading

import pytest

from qwen_gateway.storage.sqlite import open_private_db, transaction


def test_a_new_file_is_its_owners_alone_and_in_wal_mode(tmp_path):
    path = tmp_path / "state" / "x.sqlite3"
    db = open_private_db(path, timeout=1, setup="CREATE TABLE t (v INTEGER);")
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def test_a_transaction_commits_together_or_rolls_back(tmp_path):
    db = open_private_db(tmp_path / "x.sqlite3", timeout=1, setup="CREATE TABLE t (v INTEGER);")
    try:
        with transaction(db):
            db.execute("INSERT INTO t VALUES (1)")
            db.execute("INSERT INTO t VALUES (2)")
        with pytest.raises(RuntimeError), transaction(db):
            db.execute("INSERT INTO t VALUES (3)")
            raise RuntimeError("a write that fails half-way")
        assert [r[0] for r in db.execute("SELECT v FROM t ORDER BY v")] == [1, 2]
    finally:
        db.close()


def test_a_transaction_that_reads_then_writes_waits_for_another_writer_rather_than_fails(tmp_path):
    """`qwen-keys revoke` reads the key, then writes, in one transaction, while a gateway writes its spend: begun
    deferred, the read's snapshot was stale by the write and SQLite said "database is locked" at once (no busy
    wait); begun IMMEDIATE, the other writer waits for the commit."""
    path = tmp_path / "k.sqlite3"
    mine = open_private_db(path, timeout=10, setup="CREATE TABLE t (v INTEGER)")
    other = open_private_db(path, timeout=10)
    with transaction(mine):
        mine.execute("SELECT COUNT(*) FROM t").fetchall()
        writer = threading.Thread(target=lambda: other.execute("INSERT INTO t VALUES (2)"))
        writer.start()
        writer.join(0.5)  # deferred, it has committed by now; immediate, it waits for this transaction
        mine.execute("INSERT INTO t VALUES (1)")
    writer.join(10)
    assert sorted(v for (v,) in mine.execute("SELECT v FROM t")) == [1, 2]
