"""Where the named keys live (tenancy/place.py): a change of place is refused while the new place lacks a key the
gateway knows of — the folder's keys on a database, a database's keys (its copy) on the folder, the keys it
enforces at run time — and a place that cannot be read is refused too. Real files, a real PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from qwen_gateway.settings.auth import AuthSettings
from qwen_gateway.settings.config import Config
from qwen_gateway.tenancy import place
from qwen_gateway.tenancy.shared_copy import KeyCopy
from qwen_gateway.tenancy.move import move
from qwen_gateway.tenancy.ring import Keyring, KeyRecord, digest
from qwen_gateway.tenancy.store import FILENAME, SNAPSHOT, KeyStore
from qwen_gateway.storage.pg import Database, shown


def _config(folder: Path, url: str = "") -> Config:
    return Config(auth=AuthSettings.from_env(state_dir=folder, state_url=url or None))


def _keys(folder: Path, *names: str, revoked: tuple[str, ...] = ()) -> None:
    store = KeyStore.local(folder)
    try:
        for name in names:
            store.add(name, digest(name.encode()), {})
        for name in revoked:
            store.update(name, revoked=1.0)
    finally:
        store.close()


def _remote(url: str, *names: str) -> None:
    store = KeyStore.remote(Database(url))
    try:
        for name in names:
            store.add(name, digest(name.encode()), {})
    finally:
        store.close()


def test_missing_compares_name_key_and_revocation():
    alice, ci = KeyRecord("alice", b"a"), KeyRecord("ci", b"c", revoked=True)
    assert place.missing((alice, ci), (alice, ci)) == []
    assert place.missing((alice, ci), (alice, KeyRecord("ci", b"c"))) == [ci]  # active there: the entrance would open
    assert place.missing((alice,), (KeyRecord("alice", b"other"),)) == [alice]
    assert place.missing((alice,), (KeyRecord("alice", b"a", revoked=True),)) == []  # stricter there: fine
    assert place.listed([ci, alice]) == "alice, ci (revoked)"
    assert place.listed([KeyRecord(f"k{i}") for i in range(7)]) == "k0, k1, k2, k3, k4 and 2 more"


def test_a_gateway_that_knows_of_no_key_reads_nothing(tmp_path):
    assert place.refusal(_config(tmp_path), Keyring(), None) is None
    assert place.refusal(_config(tmp_path, "postgresql://gw@nowhere.invalid/db"), Keyring(), None) is None
    assert not (tmp_path / FILENAME).exists()


def test_the_folders_keys_on_a_database_without_them_are_refused(tmp_path, pg_url):
    _keys(tmp_path, "alice", "ci", revoked=("ci",))
    line = place.refusal(_config(tmp_path, pg_url), Keyring(), None)
    assert line is not None and "holds 2 named client keys (alice, ci (revoked)) in keys.sqlite3" in line
    assert "qwen-keys migrate" in line and shown(pg_url) in line
    _remote(pg_url, "alice")
    assert "1 named client key (ci (revoked))" in (place.refusal(_config(tmp_path, pg_url), Keyring(), None) or "")
    _remote(pg_url, "ci")  # active there, revoked in the folder: still refused
    assert "ci (revoked)" in (place.refusal(_config(tmp_path, pg_url), Keyring(), None) or "")


def test_once_moved_the_database_is_taken_and_the_folder_refused(tmp_path, pg_url):
    _keys(tmp_path, "alice")
    src, dst = KeyStore.local(tmp_path), KeyStore.remote(Database(pg_url))
    move(src, dst, moved_to=shown(pg_url))
    src.close(), dst.close()
    assert place.refusal(_config(tmp_path, pg_url), Keyring(), None) is None
    line = place.refusal(_config(tmp_path), Keyring(), None)
    assert line is not None and f"were moved to the shared database {shown(pg_url)}" in line and "--from URL" in line


def test_a_copy_of_a_databases_keys_refuses_the_folder_and_another_database(tmp_path, pg_url, pg_server):
    KeyCopy(tmp_path / SNAPSHOT, "postgresql://gw@db1/qwen").write((KeyRecord("bob", b"b"),))
    line = place.refusal(_config(tmp_path), Keyring(), None)
    assert line is not None and "it last enforced 1 named client key (bob) of postgresql://gw@db1/qwen" in line
    line = place.refusal(_config(tmp_path, pg_url), Keyring(), None)
    assert line is not None and "of the shared database postgresql://gw@db1/qwen" in line
    KeyCopy(tmp_path / SNAPSHOT, shown(pg_url)).write((KeyRecord("bob", b"b"),))  # a copy of this very database
    assert place.refusal(_config(tmp_path, pg_url), Keyring(), None) is None


def test_at_run_time_the_keys_enforced_must_be_held_where_it_goes(tmp_path, pg_url):
    ring = Keyring((KeyRecord("alice", digest(b"alice")),))
    line = place.refusal(_config(tmp_path, pg_url), ring, (tmp_path, ""))
    assert line is not None and "it enforces 1 named client key (alice) that the shared database" in line
    _remote(pg_url, "alice")
    assert place.refusal(_config(tmp_path, pg_url), ring, (tmp_path, "")) is None
    line = place.refusal(_config(tmp_path), ring, (tmp_path, pg_url))  # back to a folder without it
    assert line is not None and "that its state folder's keys.sqlite3" in line
    assert place.refusal(_config(tmp_path), ring, (tmp_path, "")) is None  # the place unchanged: nothing read


@pytest.mark.parametrize("host, said", [("nowhere.invalid", "unknown host"), ("127.0.0.1:1", "down or unreachable")])
def test_a_database_that_cannot_be_read_is_refused_with_its_cause(tmp_path, host, said):
    _keys(tmp_path, "alice")
    line = place.refusal(_config(tmp_path, f"postgresql://gw@{host}/qwen"), Keyring(), None)
    assert line is not None and line.startswith("could not read the shared database") and said in line, line


def test_the_note_of_the_gateways_store(tmp_path):
    place.store_note(tmp_path, "postgresql://gw@db:5432/qwen?sslmode=require")
    note = tmp_path / place.STORE_NOTE
    assert json.loads(note.read_text())["state_url"] == "postgresql://gw@db:5432/qwen"  # as logs show it
    assert note.stat().st_mode & 0o777 == 0o600
    assert place.gateway_store(tmp_path)[0] == "postgresql://gw@db:5432/qwen"
    place.store_note(tmp_path, "")
    assert not note.exists() and place.gateway_store(tmp_path) is None
