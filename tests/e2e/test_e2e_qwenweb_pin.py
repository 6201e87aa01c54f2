"""Pinned multi-turn on web accounts (issue #24 item 3): with `--set qwen_web_pin=user`, the openai SDK's turns
that share a `user` continue one Qwen Chat chat: the later completions carry only the new message and `parent_id`
= the chat's last response (which the emulator checks); one generation per chat at a time (a second request on
the pin queues, never meets "The chat is in progress!"); an edited history goes to a new chat."""

from __future__ import annotations

import threading
import urllib.parse

import pytest

from e2e.test_e2e_qwenweb import Web, start_web

pytestmark = pytest.mark.e2e


@pytest.fixture
def web(make_gateway, emu, home) -> Web:
    return start_web(make_gateway, emu, home, "--set", "qwen_web_pin=user")


def chat_of(request: dict) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(request["path"]).query)["chat_id"][0]


def completions(web: Web) -> list[dict]:
    return web.requests("/api/v2/chat/completions")


def last_response(web: Web, chat_id: str) -> str:
    return web.emu.admin("GET", "web/state")["chats"][chat_id]["last_response_id"]


def turn(web: Web, history: list[dict], text: str, user: str = "alice") -> list[dict]:
    history = [*history, {"role": "user", "content": text}]
    r = web.client.chat.completions.create(model="gpt-4o", messages=history, user=user)
    return [*history, {"role": "assistant", "content": r.choices[0].message.content}]


def test_three_turns_continue_one_chat_with_only_the_new_message(web):
    h = turn(web, [{"role": "system", "content": "Be brief."}], "one")
    first, = completions(web)
    chat = chat_of(first)
    assert first["body"]["parent_id"] is None and "Be brief." in first["body"]["messages"][0]["content"]
    parents = []
    for text in ("two", "three"):
        parents.append(last_response(web, chat))
        h = turn(web, h, text)
        sent = completions(web)[-1]
        assert chat_of(sent) == chat
        assert sent["body"]["parent_id"] == parents[-1] and sent["body"]["messages"][0]["parentId"] == parents[-1]
        assert [m["content"] for m in sent["body"]["messages"]] == [text]
    assert h[-1]["content"] == "Echo: three"
    assert len(web.requests("/api/v2/chats/new")) == 1
    assert parents[0] != parents[1]
    assert web.emu.admin("GET", "web/state")["chats"][chat]["messages"] == 6


def test_without_a_user_every_request_is_a_new_chat(web):
    h = turn(web, [], "one", user="")
    turn(web, h, "two", user="")
    assert len(web.requests("/api/v2/chats/new")) == 2
    assert "Conversation so far" in completions(web)[-1]["body"]["messages"][0]["content"]


def test_an_edited_history_goes_to_a_new_chat(web):
    h = turn(web, [], "one")
    h = turn(web, h, "two")
    edited = [{"role": "user", "content": "ONE (edited)"}, *h[1:3]]
    turn(web, edited, "three")
    sent = completions(web)[-1]
    assert chat_of(sent) != chat_of(completions(web)[0]) and sent["body"]["parent_id"] is None
    assert "ONE (edited)" in sent["body"]["messages"][0]["content"]
    assert len(web.requests("/api/v2/chats/new")) == 2
    turn(web, [*edited, {"role": "user", "content": "three"}, {"role": "assistant", "content": "Echo: three"}],
         "four")  # the new chat is pinned in turn
    assert chat_of(completions(web)[-1]) == chat_of(sent)


def test_another_user_has_a_chat_of_its_own(web):
    turn(web, [], "one", user="alice")
    h = turn(web, [], "one", user="bob")
    turn(web, h, "two", user="bob")
    chats = [chat_of(r) for r in completions(web)]
    assert chats[0] != chats[1] and chats[1] == chats[2]


def test_two_requests_on_one_pin_queue_and_are_both_answered(web):
    h = turn(web, [], "one")
    chat = chat_of(completions(web)[0])
    web.admin("fault", kind="hold")  # the next generation pauses after response.created, until released
    answers: dict[str, str] = {}

    def ask(text: str) -> None:
        answers[text] = turn(web, h, text)[-1]["content"]

    first = threading.Thread(target=ask, args=("two",))
    first.start()
    try:
        for _ in range(1000):  # until the first holds the chat
            if web.emu.admin("GET", "web/state")["chats"][chat]["busy"]:
                break
            threading.Event().wait(0.01)
        second = threading.Thread(target=ask, args=("two bis",))
        second.start()
        threading.Event().wait(0.3)  # the second is queued in the gateway, not sent
        assert len(completions(web)) == 2
    finally:
        web.admin("release")
        first.join(30)
    second.join(30)
    assert answers["two"] == "Echo: two"
    assert "User: two bis" in answers["two bis"]  # answered in a new chat, the history flattened
    state = web.emu.admin("GET", "web/state")
    assert state["stats"]["in_progress"] == 0
    sent = completions(web)
    assert chat_of(sent[1]) == chat and chat_of(sent[2]) != chat  # the pin had moved on: a new chat


def test_a_refused_parent_falls_back_once_to_a_new_chat(web):
    h = turn(web, [], "one")
    web.admin("fault", kind="bad_request", details="The parent message is not the chat's last response!")
    h = turn(web, h, "two")
    assert "User: two" in h[-1]["content"]  # the new chat got the whole history
    sent = completions(web)
    assert sent[1]["body"]["parent_id"] is not None and sent[2]["body"]["parent_id"] is None
    assert chat_of(sent[2]) != chat_of(sent[0]) and "Conversation so far" in sent[2]["body"]["messages"][0]["content"]
    turn(web, h, "three")  # the new chat is the pin now
    assert chat_of(completions(web)[-1]) == chat_of(sent[2])


def test_pinned_turns_stream(web):
    h = turn(web, [], "one")
    stream = web.client.chat.completions.create(model="gpt-4o", messages=[*h, {"role": "user", "content": "two"}],
                                                user="alice", stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Echo: two"
    h = [*h, {"role": "user", "content": "two"}, {"role": "assistant", "content": text}]
    turn(web, h, "three")
    chats = {chat_of(r) for r in completions(web)}
    assert len(chats) == 1 and completions(web)[-1]["body"]["messages"][0]["content"] == "three"


def test_responses_turns_with_previous_response_id_continue_one_chat(web):
    r1 = web.client.responses.create(model="gpt-4o", input="one", user="alice")
    r2 = web.client.responses.create(model="gpt-4o", input="two", user="alice", previous_response_id=r1.id)
    web.client.responses.create(model="gpt-4o", input="three", user="alice", previous_response_id=r2.id)
    sent = completions(web)
    assert r2.output_text == "Echo: two" and len({chat_of(r) for r in sent}) == 1
    assert [r["body"]["messages"][0]["content"] for r in sent] == ["one", "two", "three"]
    assert len(web.requests("/api/v2/chats/new")) == 1
