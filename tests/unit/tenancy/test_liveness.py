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
