"""Which web chat a turn continues (upstream/qwenweb/pins.py): a pin's transcript a prefix of the turn's, and the
store of pins, private, until their TTL. The pinning in the upstream: tests/unit/upstream/qwenweb/test_pinning.py."""

from __future__ import annotations

import stat

import pytest

from qwen_gateway.upstream.qwenweb.pins import Pin, PinStore, follow_up, pin_key, transcript_digest

U1, A1, U2 = ({"role": "user", "content": "one"}, {"role": "assistant", "content": "Echo: one"},
              {"role": "user", "content": "two"})


def pinned(messages: list[dict], **chat) -> Pin:
    return Pin("c1", "r1", transcript_digest({"messages": messages, **chat}, len(messages)), len(messages), 1e18)


def test_a_turn_continues_the_pin_when_its_transcript_is_a_prefix():
    pin = pinned([U1])
    assert follow_up({"messages": [U1, A1, U2]}, pin) == [U2]
    tool = {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    assert follow_up({"messages": [U1, A1, tool, U2]}, pin) == [tool, U2]


@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": "ONE"}, A1, U2],  # an edited history
    [U1, A1],  # nothing new
    [U1],  # the same request again
    [U1, U2, U2],  # no assistant answer where the pin ends
    [U1, A1, U2, A1],  # ends with an assistant turn of the client's own
])
def test_anything_else_is_a_new_chat(messages):
    assert follow_up({"messages": messages}, pinned([U1])) is None


def test_other_tools_are_another_transcript():
    pin = pinned([U1], tools=[{"type": "function", "function": {"name": "a"}}])
    assert follow_up({"messages": [U1, A1, U2], "tools": [{"type": "function", "function": {"name": "a"}}]}, pin)
    assert follow_up({"messages": [U1, A1, U2], "tools": [{"type": "function", "function": {"name": "b"}}]},
                     pin) is None


def test_the_store_keeps_pins_until_their_ttl_in_a_private_file(tmp_path):
    path = tmp_path / "state" / "web_pins.sqlite3"
    store = PinStore(path, ttl=60)
    key = pin_key("chat", "alice", "qwen3.7-plus")
    assert key != pin_key("chat", "bob", "qwen3.7-plus") and "alice" not in key
    store.put(key, "c1", "r1", "d", 1, now=1000)
    store.close()
    again = PinStore(path, ttl=60)  # a restart
    assert again.get(key, now=1059) == Pin("c1", "r1", "d", 1, 1060)
    assert again.get(key, now=1060) is None  # expired, and forgotten
    assert again.get(key, now=1000) is None
    again.put(key, "c1", "r2", "d", 3)
    again.drop(key)
    assert again.get(key) is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "alice" not in path.read_bytes().decode("latin-1")


def test_a_pin_key_is_a_digest_of_account_session_and_model():
    key = pin_key("chat", "alice", "qwen3.7-plus")
    assert len(key) == 64 and key == pin_key("chat", "alice", "qwen3.7-plus")
    assert len({key, pin_key("chat2", "alice", "qwen3.7-plus"), pin_key("chat", "alice", "qwen3.7-max")}) == 3


def test_the_digest_covers_the_first_messages_the_tools_and_the_choice():
    chat = {"messages": [U1, A1, U2], "tools": [], "tool_choice": None}
    assert transcript_digest(chat, 1) == transcript_digest({"messages": [U1]}, 1)  # only the first `count`
    assert transcript_digest(chat, 1) != transcript_digest(chat, 2)
    assert transcript_digest({**chat, "tool_choice": "required"}, 1) != transcript_digest(chat, 1)
