"""Which conversation a request continues (api/conversation.py): a session the client names, else its user, else
the digest of its opening; only digests, never the client's text."""

from __future__ import annotations

import hashlib
import json

from qwen_gateway.api import conversation
from qwen_gateway.exchange import ClientRequest, Exchange

SYSTEM = {"role": "system", "content": "be brief"}


def of(body: dict, messages: list[dict] | None = None):
    return conversation.of(body, {"messages": messages or []})


def test_a_prompt_cache_key_decides_first():
    c = of({"prompt_cache_key": "k", "user": "u", "metadata": {"user_id": "x"}})
    assert c.source == "prompt_cache_key" and c == of({"prompt_cache_key": "k"}) != of({"prompt_cache_key": "j"})


def test_claude_codes_session_in_either_form_is_the_session():
    modern = of({"metadata": {"user_id": json.dumps({"device_id": "d", "session_id": "s-1"})}})
    older = of({"metadata": {"user_id": "user_abc_account__session_s-1"}})
    assert modern.source == older.source == "session" and modern == older


def test_a_user_id_without_a_session_is_the_user():
    assert of({"metadata": {"user_id": "alice"}}).source == "user"
    assert of({"user": "alice"}) == of({"metadata": {"user_id": "alice"}})  # the same user, however named


def test_without_a_name_the_opening_decides_and_later_turns_keep_it():
    first = of({}, [SYSTEM, {"role": "user", "content": "q1"}])
    later = of({}, [SYSTEM, {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
                    {"role": "user", "content": "q2"}])
    other = of({}, [SYSTEM, {"role": "user", "content": "another"}])
    assert first.source == "opening" and first == later != other


def test_an_image_part_does_not_change_the_opening():
    text = [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:a"}}]
    same = [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:b"}}]
    assert of({}, [{"role": "user", "content": text}]) == of({}, [{"role": "user", "content": same}])


def test_no_messages_no_conversation():
    assert of({}) is None and conversation.opening("junk") is None


def test_only_a_digest_is_kept():
    c = of({"prompt_cache_key": "secret-session"})
    assert len(c.key) == 32 and "secret" not in c.key


def test_a_keyed_translation_sets_the_exchanges_conversation():
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://x"))
    translate = conversation.keyed(lambda body, ex: {"messages": body["messages"]})
    chat = translate({"messages": [{"role": "user", "content": "q"}]}, ex)
    assert chat == {"messages": [{"role": "user", "content": "q"}]} and ex.conversation.source == "opening"


def test_an_opening_is_hashed_once_for_all_its_turns(monkeypatch):
    """Every turn resends the opening: its digest (the same as ever: shared affinity rows hold it) is computed on the
    first turn and read back on the next ones."""
    opening = [{"role": "system", "content": "hashed once " * 10}, {"role": "user", "content": "q"}]
    before = hashlib.sha256(b"opening\0system\0" + b"hashed once " * 10 + b"\0user\0q").hexdigest()[:32]
    hashed = []
    real = conversation.hashlib.sha256
    monkeypatch.setattr(conversation.hashlib, "sha256", lambda data=b"": hashed.append(1) or real(data))
    turns = [of({}, opening), of({}, [*opening, {"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]),
             of({}, opening)]
    assert [c.key for c in turns] == [before] * 3 and len(hashed) <= 1
    assert turns[0] is not turns[2]  # each request's own: the engine writes its lifetime on it
