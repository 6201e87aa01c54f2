"""The keys of a gateway on the shared database, kept in step (tenancy/source_pg.py), over a stand-in for the
database: a change heard and not read refuses that key (503) until a read succeeds, a full read that fails
refuses nothing; each qwen-keys change read again, then acknowledged — as refusing when it could not be read.
tests/e2e/test_e2e_keys_revoke.py does it on real gateways, PgBouncer stopped."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from qwen_gateway.tenancy.ring import Keyring, KeyRecord
from qwen_gateway.tenancy.refusals import refused_record
from qwen_gateway.tenancy.shared_copy import KeyCopy
from qwen_gateway.tenancy.source_pg import SharedFollow
from qwen_gateway.tenancy.spend import SpendBook


class Keys:
    """The shared keys as the database holds them; `down` makes every read fail."""

    def __init__(self, *records: KeyRecord) -> None:
        self.records = {r.name: r for r in records}
        self.down = False
        self.acks: list[tuple[str, bool]] = []

    async def keys(self, name=None):
        if self.down:
            raise ConnectionError("the pool and the listener's route")
        return [r for n, r in self.records.items() if name is None or n == name]

    async def spend(self, today, name=None):
        if self.down:
            raise ConnectionError("down")
        return {}

    async def ack(self, token, refusing):
        self.acks.append((token, refusing))


@pytest.fixture
def followed(tmp_path):
    keys = Keys(KeyRecord("alice", b"a"), KeyRecord("bob", b"b"))
    state = SimpleNamespace(ring=Keyring(loaded=False), book=SpendBook())
    installed = []

    def install(ring, **kw):
        installed.append(kw)
        state.ring = ring

    follow = SharedFollow(keys, KeyCopy(tmp_path / "copy.sqlite3"), state, install, lambda: "")
    return follow, keys, state


async def test_a_change_heard_and_not_read_refuses_that_key_until_it_is_read(followed, caplog):
    follow, keys, state = followed
    await follow.reload(None)
    keys.down = True
    with pytest.raises(ConnectionError):
        await follow.reload(None)  # a full read that fails: nothing is refused for it
    assert not any(r.unread for r in state.ring.records)
    caplog.set_level(logging.WARNING, "qwen")
    with pytest.raises(ConnectionError):
        await follow.reload("alice")  # NOTIFY key:alice, and nothing answers
    alice = state.ring.by_name["alice"]
    assert alice.unread and not state.ring.by_name["bob"].unread
    refusal = refused_record(alice)
    assert refusal.status == 503 and refusal.code == "state_unavailable" and refusal.headers["retry-after"] == "5"
    assert "could not read the change yet" in refusal.message
    assert "qwen: key alice changed in the shared database and this gateway could not read the change" in caplog.text
    assert KeyCopy(follow.copy.path).read() == (KeyRecord("alice", b"a"), KeyRecord("bob", b"b"))  # never saved
    keys.down = False
    keys.records["alice"] = KeyRecord("alice", b"a", revoked=True)
    await follow.reload(None)  # the next read that succeeds: as the database says
    assert state.ring.by_name["alice"] == KeyRecord("alice", b"a", revoked=True)


async def test_each_qwen_keys_change_is_read_again_then_acknowledged(followed):
    follow, keys, state = followed
    await follow.reload(None)
    keys.records["bob"] = KeyRecord("bob", b"b", revoked=True)
    await follow.ack("t1:bob")
    assert state.ring.by_name["bob"].revoked and keys.acks == [("t1", False)]
    keys.down = True
    await follow.ack("t2:alice")  # it cannot read the change: it refuses the key, and says so
    assert state.ring.by_name["alice"].unread and keys.acks[-1] == ("t2", True)
    await follow.ack(None)  # the listener's read of everything as it connects: nothing to acknowledge
    assert len(keys.acks) == 2


async def test_another_gateways_spend_heard_and_not_read_refuses_nothing(followed):
    """Two clean-clone runs (test_e2e_keys_truth's cut-off gateway): a gateway whose pool was cut but whose listener still
    heard answered 503 for a key without limits — the other gateway's spend of it was announced as `key:alice`,
    the notification of a change, and a change not read refuses the key. Spend is announced as `key-spend:alice`:
    read into the book when it can be, and a key is never refused for it (a key with limits or budgets is refused
    by its own counts while they cannot be made)."""
    follow, keys, state = followed
    await follow.reload(None)
    keys.down = True
    await follow.spent("alice")  # the database away: nothing raised, nothing refused
    assert not state.ring.by_name["alice"].unread
    keys.down = False
    await follow.spent("alice")
    await follow.spent(None)
    assert not any(r.unread for r in state.ring.records)
