"""A turn's cache lifetime chosen for the user's money (cache/lifetime.py, `qwen_cache_lifetime=auto`)."""

from __future__ import annotations

from qwen_gateway.cache.lifetime import KEYS, Prices, Rhythms, choose

QWEN4 = Prices(1.25, 2.0, 0.05)


def clocked() -> tuple[Rhythms, list[float]]:
    now = [0.0]
    return Rhythms(clock=lambda: now[0]), now


def test_a_new_key_keeps_five_minutes_and_an_opening_turn_never_pays_the_hour():
    rhythms, _ = clocked()
    pauses, added = rhythms.turn("alice", "c1", 20_000)
    assert added == 20_000 and not choose(pauses, 20_000, added, QWEN4).hour


def test_a_key_whose_conversations_pause_long_gets_the_hour_on_its_growing_turns():
    rhythms, now = clocked()
    for conversation in ("c1", "c2", "c3"):  # three sessions, each with one lunch among short turns
        for i in range(10):
            now[0] += 1800 if i == 5 else 40
            rhythms.turn("alice", conversation, 20_000 + 2_000 * i)
    pauses, added = rhythms.turn("alice", "c3", 40_000)
    choice = choose(pauses, 40_000, added, QWEN4)
    assert added == 2_000 and choice.hour and choice.saving > 0 and pauses.over_5m == 3
    quiet, _ = rhythms.turn("bob", "c9", 42_000)  # another key's rhythm is its own
    assert quiet.seen == 0


def test_a_key_that_never_pauses_long_keeps_five_minutes():
    rhythms, now = clocked()
    for i in range(40):
        now[0] += 40
        pauses, added = rhythms.turn("carol", "c1", 20_000 + 2_000 * i)
    assert not choose(pauses, 98_000, added, QWEN4).hour


def test_what_is_kept_is_bounded():
    rhythms, _ = clocked()
    for k in range(KEYS + 50):
        rhythms.turn(f"k{k}", "c", 1000)
    assert len(rhythms.keys) == KEYS and "k0" not in rhythms.keys
