"""Named client keys in memory (tenancy/ring.py): found by their SHA-256 only, counted, and when a key
is required."""

from __future__ import annotations

from qwen_gateway.tenancy.ring import PREFIX, Keyring, KeyRecord, digest, new_key


def test_new_keys_are_prefixed_random_and_url_safe():
    a, b = new_key(), new_key()
    assert a.startswith(PREFIX) and a != b and len(a) == len(PREFIX) + 43
    assert set(a[len(PREFIX):]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_a_key_is_found_by_its_digest_and_nothing_else():
    key = new_key()
    rec = KeyRecord("ci", digest(key.encode()), rpm=60)
    ring = Keyring((rec,))
    assert ring.find(key.encode()) is rec and ring.find_digest(rec.digest) is rec
    assert ring.find(key.encode() + b"x") is None and ring.find(rec.digest) is None  # the digest is not the key
    assert ring.by_name["ci"] is rec


def test_counts_and_limits():
    ring = Keyring((KeyRecord("a", b"1"), KeyRecord("b", b"2", revoked=True),
                    KeyRecord("c", b"3", tpm=1000, monthly_usd=2.5)))
    assert (ring.active, ring.revoked) == (2, 1)
    assert ring.by_name["c"].limits == {"tpm": 1000, "monthly-usd": 2.5} and ring.by_name["a"].limits == {}


def test_a_key_is_required_once_any_exists_or_while_nothing_is_known():
    assert not Keyring().required  # keyless: the loopback clients are served as before
    assert Keyring((KeyRecord("r", b"1", revoked=True),)).required  # all revoked: closed, not open
    assert Keyring(loaded=False).required  # the shared keys not read yet: fail closed
    assert Keyring(locked=True).required and Keyring(locked=True).locked
    assert not Keyring((KeyRecord("a", b"1"),), locked=True).locked  # locked only with no key left


def test_replaced_builds_a_new_ring_and_keeps_how_it_was_read():
    ring = Keyring((KeyRecord("a", b"1"), KeyRecord("b", b"2")), provisional=True)
    new = ring.replaced("a", KeyRecord("a", b"9", rpm=5))
    assert [r.name for r in new.records] == ["b", "a"] and new.find_digest(b"9").rpm == 5
    assert new.find_digest(b"1") is None and new.provisional
    assert [r.name for r in ring.records] == ["a", "b"]  # the old ring is unchanged (read without a lock)
    assert [r.name for r in ring.replaced("b", None).records] == ["a"]


def test_what_became_of_a_key_ends_its_requests_only_when_it_no_longer_opens():
    alice, bob, carol, dan = (KeyRecord(n, n.encode()) for n in ("alice", "bob", "carol", "dan"))
    old = Keyring((alice, bob, carol, dan))
    new = Keyring((KeyRecord("alice", b"alice", revoked=True), KeyRecord("bob", b"new"),
                   KeyRecord("dan", b"dan", rpm=5)))  # carol deleted; dan's limits changed: his key still opens
    assert [new.change(r) for r in (alice, bob, carol, dan)] == ["revoked", "rotated", "deleted", ""]
    assert old.changes(new) == [("alice", "revoked"), ("bob", "rotated"), ("carol", "deleted")]
    assert old.changes(old) == [] and old.change(alice) == ""
