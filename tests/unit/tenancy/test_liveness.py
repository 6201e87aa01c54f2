"""Which gateways are gone (tenancy/liveness.py): a beat that stopped changing, on the observer's monotonic clock."""

from qwen_gateway.tenancy.liveness import Peers


def test_a_beat_that_keeps_changing_is_alive_whatever_its_value():
    peers = Peers(15.0)
    assert peers.gone([("a", 100.0)], now=0.0, me="me") == []
    assert peers.gone([("a", 162.0)], now=10.0, me="me") == []  # the database's clock stepped 60 s ahead
    assert peers.gone([("a", 104.0)], now=20.0, me="me") == []  # and back
    assert peers.gone([("a", 106.0)], now=34.9, me="me") == []


def test_a_beat_unchanged_for_the_dead_window_is_gone():
    peers = Peers(15.0)
    peers.gone([("a", 100.0), ("b", 100.0)], now=0.0, me="me")
    assert peers.gone([("a", 100.0), ("b", 102.0)], now=14.9, me="me") == []
    assert peers.gone([("a", 100.0), ("b", 104.0)], now=15.0, me="me") == ["a"]


def test_a_gateway_first_seen_gets_the_whole_window_and_the_observer_is_never_gone():
    peers = Peers(15.0)
    assert peers.gone([("me", 1.0), ("old", 1.0)], now=1000.0, me="me") == []  # its beat may be hours old
    assert peers.gone([("me", 1.0), ("old", 1.0)], now=1015.0, me="me") == ["old"]


def test_only_the_gateways_read_are_remembered():
    peers = Peers(15.0)
    peers.gone([("a", 1.0)], now=0.0, me="me")
    peers.gone([], now=5.0, me="me")  # its holds ended: no longer read
    assert peers.gone([("a", 1.0)], now=16.0, me="me") == []  # seen anew: a new window


def test_quiet_is_said_only_for_a_beat_seen_changing():
    """qwen-keys reads it (cli/keys_applied.py): a peer only ever read unchanged has no known quiet — when it last
    beat is not something this observer saw — and one seen beating is quiet since its last change, on this clock."""
    peers = Peers(15.0)
    peers.gone([("a", 1.0), ("b", 7.0)], 100.0, "me")
    assert peers.quiet(101.0) == {}
    peers.gone([("a", 2.0), ("b", 7.0)], 102.0, "me")
    assert peers.quiet(110.0) == {"a": 8.0}
    peers.gone([("a", 2.0), ("b", 7.0)], 120.0, "me")
    assert peers.quiet(130.0) == {"a": 28.0}  # a step of the database's clock moves no beat it does not write
