"""What the gateway says of its named keys in its log (tenancy/log_lines.py): at start-up, and one
line when that changes."""

from __future__ import annotations

from qwen_gateway.tenancy import log_lines
from qwen_gateway.tenancy.ring import Keyring, KeyRecord

ONE = Keyring((KeyRecord("a", b"1"), KeyRecord("b", b"2", revoked=True)))
REVOKED = Keyring((KeyRecord("b", b"2", revoked=True),))
NONE = Keyring()


def change(old, new, *, first=False, flat=False, exposed=()):
    return log_lines.change(old, new, first=first, where=log_lines.SHARED, flat=flat, exposed=list(exposed))


def test_start_up_says_how_many_keys_and_where_they_were_read():
    assert change(Keyring(loaded=False), ONE, first=True) == (
        "qwen: named client keys: 1 active, 1 revoked: every request needs a key (Authorization: Bearer KEY or "
        "x-api-key; qwen-keys list shows them) (the shared database)")
    assert change(Keyring(loaded=False), REVOKED, first=True).startswith(
        "qwen: WARNING: named client keys: none active, 1 revoked: every request is refused")
    assert change(Keyring(loaded=False), NONE, first=True) is None  # keyless from the start: nothing to say


def test_the_first_key_and_the_last_one_are_said_once_each():
    assert change(NONE, ONE) == ("qwen: a named client key was added: every request now needs a key (1 active, "
                                 "1 revoked; docs/keys.md)")
    assert change(ONE, NONE) == ("qwen: no named client key is left: the gateway no longer requires a key (it "
                                 "serves its loopback clients, as before any key existed)")
    assert "keys file's keys" in change(ONE, NONE, flat=True)
    assert change(ONE, ONE) is None


def test_the_last_active_key_revoked_is_a_warning():
    assert change(ONE, REVOKED).startswith("qwen: WARNING: named client keys: none active, 1 revoked")


def test_no_key_left_beyond_loopback_locks_the_door_and_says_so():
    locked = Keyring(locked=True)
    line = change(ONE, locked, exposed=["0.0.0.0:8080", "[::]:8080"])
    assert line == ("qwen: WARNING: no named client key is left, but this gateway listens beyond loopback "
                    "(0.0.0.0:8080, [::]:8080) without client keys: it refuses every request until a key is added "
                    "(qwen-keys add NAME); restart it to listen on loopback only")
    assert change(locked, Keyring(locked=True)) is None  # said once


def test_what_the_log_says_as_the_keys_change():
    none, alice = Keyring(), Keyring((KeyRecord("alice", b"a"),))
    revoked = Keyring((KeyRecord("alice", b"a", revoked=True),))
    say = lambda old, new, first=False, flat=False: log_lines.change(old, new, first=first, where="", flat=flat,  # noqa: E731
                                                                     exposed=["regular@8080 (on 0.0.0.0)"])
    assert say(Keyring(loaded=False), alice, first=True).startswith("qwen: named client keys: 1 active, 0 revoked")
    assert say(Keyring(loaded=False), none, first=True) is None  # no keys: nothing to say
    assert "every request now needs a key" in say(none, alice)
    assert "none active, 1 revoked: every request is refused" in say(alice, revoked)
    assert "no longer requires a key" in say(revoked, none)
    assert "keys file" in say(revoked, none, flat=True)
    assert "listens beyond loopback (regular@8080 (on 0.0.0.0))" in say(revoked, Keyring(locked=True))
    assert say(alice, alice) is None
