"""Keys moved whole (tenancy/move.py), between two real keys files here (the e2e tests move them to and from a real
PostgreSQL): records and spend whole, nothing half way when the target fails midway, a conflict moves nothing, a
move run again counts nothing twice."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from qwen_gateway.tenancy.move import MoveRefused, move
from qwen_gateway.tenancy.ring import digest
from qwen_gateway.tenancy.schema import DAY_ROW, KEY_ROW, MOVED_TO, read_note
from qwen_gateway.tenancy.store import Delta, KeyStore
from qwen_gateway.storage.sqlite import read_only_copy


def _team(folder: Path) -> KeyStore:
    store = KeyStore.local(folder)
    store.add("alice", digest(b"alice"), {"rpm": 5, "monthly_usd": 2.5})
    store.add("ci", digest(b"ci"), {"daily_tokens": 100})
    store.update("ci", revoked=1234.5)
    store.write_spend({("alice", "2026-11-01"): Delta(requests=3, tokens=40, usd=0.25, last_used=99.0),
                       ("alice", "2026-11-02"): Delta(requests=1, refused=1), ("ci", "2026-11-02"): Delta(tokens=7)})
    return store


def _everything(store: KeyStore) -> tuple[list, list]:
    return (store.select(f"SELECT {KEY_ROW} FROM client_keys ORDER BY name"),
            store.select(f"SELECT {DAY_ROW} FROM key_day ORDER BY name, day"))


def test_a_move_carries_every_record_and_day_and_leaves_a_note(tmp_path):
    source, target = _team(tmp_path / "a"), KeyStore.local(tmp_path / "b")
    before = _everything(source)
    done = move(source, target, moved_to="postgresql://gw@db/qwen")
    assert (done.active, done.revoked, done.there, done.days) == (1, 1, 0, 3)
    assert _everything(target) == before  # created, changed, revoked times and limits as they were
    assert _everything(source) == ([], [])
    assert read_note(source.conn, MOVED_TO)[0] == "postgresql://gw@db/qwen"


def test_a_target_failing_midway_keeps_nothing_and_the_source_as_it_was(tmp_path):
    source, target = _team(tmp_path / "a"), KeyStore.local(tmp_path / "b")
    target.conn.execute("CREATE TRIGGER fail BEFORE INSERT ON key_day BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END")
    before = _everything(source)
    with pytest.raises(sqlite3.IntegrityError):
        move(source, target, moved_to="postgresql://gw@db/qwen")
    assert _everything(target) == ([], [])  # the keys it had written before the days: rolled back with them
    assert _everything(source) == before and read_note(source.conn, MOVED_TO) is None


def test_a_conflict_moves_nothing(tmp_path):
    source, target = _team(tmp_path / "a"), KeyStore.local(tmp_path / "b")
    target.add("alice", digest(b"another alice"), {})
    with pytest.raises(MoveRefused, match="alice"):
        move(source, target, moved_to="x")
    assert [r[0] for r in _everything(target)[0]] == ["alice"] and len(_everything(source)[0]) == 2
    other = KeyStore.local(tmp_path / "c")
    other.add("ci", digest(b"ci"), {})  # the same key, active where the source revoked it
    with pytest.raises(MoveRefused, match="ci"):
        move(source, other)


def test_a_move_run_again_counts_nothing_twice(tmp_path):
    source, target = _team(tmp_path / "a"), KeyStore.local(tmp_path / "b")
    move(source, target)  # the target committed; the source not emptied (cut between the two commits)
    again = move(source, target, moved_to="x")
    assert (again.active, again.revoked, again.there, again.days) == (0, 0, 2, 0)
    assert target.spend(today="2026-11-02")["alice"].requests_today == 1
    assert target.spend(today="2026-11-01")["alice"].tokens_today == 40


def test_a_read_only_folder_cannot_be_moved_from(tmp_path):
    _team(tmp_path / "a").close()
    path = tmp_path / "a" / "keys.sqlite3"
    source = KeyStore(read_only_copy(path), shared=False, copy_of=path)  # as KeyStore.local reads a read-only folder
    with pytest.raises(MoveRefused, match="cannot be written"):
        move(source, KeyStore.local(tmp_path / "b"), moved_to="x")
    assert len(_everything(source)[0]) == 2
