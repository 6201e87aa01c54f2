"""The local copy of the shared keys (tenancy/shared_copy.py): saved before a change takes effect,
0600, read at start, written anew for another database, removed when it cannot be written."""

from __future__ import annotations

import logging
import stat

from qwen_gateway.tenancy.ring import KeyRecord
from qwen_gateway.tenancy.shared_copy import KeyCopy

A = KeyRecord("alice", b"a" * 32, rpm=5)
B = KeyRecord("bob", b"b" * 32, revoked=True)


def test_no_copy_reads_as_none(tmp_path):
    assert KeyCopy(tmp_path / "keys-shared.sqlite3").read() is None


async def test_kept_keys_read_back_and_the_file_is_private(tmp_path):
    path = tmp_path / "keys-shared.sqlite3"
    await KeyCopy(path, "postgresql://db/qwen").keep((B, A))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = KeyCopy(path, "postgresql://db/qwen")
    assert sorted(again.read(), key=lambda r: r.name) == [A, B]
    assert again.saved == (A, B)  # the same database's copy: nothing to write until the keys change


async def test_the_same_keys_are_not_written_again(tmp_path, monkeypatch):
    copy = KeyCopy(tmp_path / "keys-shared.sqlite3")
    await copy.keep((A,))
    writes: list[tuple] = []
    monkeypatch.setattr(copy, "write", writes.append)
    await copy.keep((A,))
    assert writes == []
    await copy.keep((A, B))
    assert writes == [(A, B)]


async def test_a_copy_of_another_database_is_written_anew(tmp_path):
    path = tmp_path / "keys-shared.sqlite3"
    await KeyCopy(path, "postgresql://db/one").keep((A,))
    other = KeyCopy(path, "postgresql://db/two")
    assert other.read() == (A,) and other.saved is None  # its keys, but not of this database


async def test_a_copy_that_cannot_be_written_is_removed_and_said(tmp_path, monkeypatch, caplog):
    path = tmp_path / "keys-shared.sqlite3"
    copy = KeyCopy(path)
    await copy.keep((A,))

    def fails(keys):
        raise OSError("disk full")

    monkeypatch.setattr(copy, "write", fails)
    with caplog.at_level(logging.WARNING, logger="qwen"):
        await copy.keep((A, B))
    # a copy that might hold a revoked key as active is worse than none: a restart during an outage refuses all
    assert not path.exists() and copy.saved is None
    assert "could not save the copy of the named client keys" in caplog.text and "it was removed" in caplog.text


def test_an_unreadable_copy_is_not_used(tmp_path, caplog):
    path = tmp_path / "keys-shared.sqlite3"
    path.write_bytes(b"not a database at all" * 10)
    with caplog.at_level(logging.WARNING, logger="qwen"):
        assert KeyCopy(path).read() is None
    assert "could not read the copy of the named client keys" in caplog.text
