"""Long conversations on a Qwen Chat web account (issue #31 item 7). Qwen Chat's WAF blocks a message of about
62,000 characters and more (qwen-web-protocol.md §1.14; the emulator enforces it, test_the_waf_body_size_rule)
and then keeps the session blocked: the gateway never sends a message over what was seen passing (50,000
characters, 150,000 bytes), refuses it locally with a 400 in the client's dialect naming the limit, and never
parks the account for it. A pinned conversation sends only its new message, so it is not refused for the
length of its history."""

from __future__ import annotations

import httpx
import openai
import pytest

from e2e.test_e2e_qwenweb import Web, start_web, web  # noqa: F401  (the fixture)

pytestmark = pytest.mark.e2e

TOO_LONG = 63_000  # over what Qwen Chat's WAF blocks


def refused(e: pytest.ExceptionInfo) -> str:
    assert e.value.status_code == 400, e.value
    body = e.value.body
    assert body["code"] == "context_length_exceeded" and body["type"] == "invalid_request_error", body
    assert "50,000 characters" in body["message"] and "62,000" in body["message"], body["message"]
    return body["message"]


def account_state(web: Web) -> str:
    return httpx.get(web.gw.url + "/health", trust_env=False).json()["accounts"][0]["state"]


@pytest.mark.parametrize("shape", ["one long message", "a long history of short turns"])
def test_over_the_waf_rule_is_refused_locally_and_the_account_stays_usable(web, shape):  # noqa: F811
    if shape == "one long message":
        messages = [{"role": "user", "content": "y" * TOO_LONG}]
    else:
        messages = [m for i in range(7) for m in ({"role": "user", "content": f"{i} " + "w" * 9_000},
                                                 {"role": "assistant", "content": f"ok {i}"})]
        messages.append({"role": "user", "content": "and now?"})
    with pytest.raises(openai.BadRequestError) as e:
        web.client.chat.completions.create(model="gpt-4o", messages=messages)
    message = refused(e)
    assert "web account" in message and "API-key account" in message
    assert web.sent() == [] and web.requests("/api/v2/chats/new") == []  # nothing went to Qwen Chat
    assert web.emu.admin("GET", "web/state")["stats"]["punished"] == 0
    assert account_state(web) == "ok"  # not parked
    assert web.ask("hi").choices[0].message.content == "Echo: hi"


def test_what_was_seen_passing_is_sent_and_nothing_more(web):  # noqa: F811
    assert web.ask("z" * 49_000).choices[0].message.content == "Echo: " + "z" * 49_000
    assert web.ask("字" * 49_000).choices[0].message.content.startswith("Echo: 字字")  # 147,000 bytes
    assert [b["messages"][0]["content"] for b in web.sent()] == ["z" * 49_000, "字" * 49_000]
    for text in ("z" * 55_000,  # between what was seen passing (50,000) and what was seen blocked (62,000)
                 "字" * 49_900):  # fewer characters, but over 150,000 bytes of UTF-8
        with pytest.raises(openai.BadRequestError) as e:
            web.ask(text)
        refused(e)
    assert len(web.sent()) == 2 and account_state(web) == "ok"


def test_a_stream_is_refused_before_anything_is_sent(web):  # noqa: F811
    r = httpx.post(web.gw.url + "/v1/chat/completions", trust_env=False, timeout=30,
                   headers={"authorization": "Bearer client-key"},
                   json={"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "y" * TOO_LONG}]})
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/json"), r.text[:300]
    assert r.json()["error"]["code"] == "context_length_exceeded"
    # The Responses API, streamed as Codex sends it, ends as OpenAI ends a stream over the context: response.failed
    events = list(web.client.responses.create(model="gpt-4o", input="y" * TOO_LONG, stream=True))
    assert [e.type for e in events] == ["response.created", "response.in_progress", "response.failed"]
    error = events[-1].response.error
    assert error.code == "context_length_exceeded" and "50,000 characters" in error.message
    assert web.sent() == [] and account_state(web) == "ok"


def test_anthropic_clients_get_anthropics_error(web):  # noqa: F811
    """Claude Code shows a 400's message verbatim; Anthropic's own words for this case start the same way."""
    for stream in (False, True):
        r = httpx.post(web.gw.url + "/v1/messages", trust_env=False, timeout=30,
                       headers={"x-api-key": "client-key", "anthropic-version": "2023-06-01"},
                       json={"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": stream,
                             "messages": [{"role": "user", "content": "y" * TOO_LONG}]})
        assert r.status_code == 400, r.text[:300]
        body = r.json()
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
        assert body["error"]["message"].startswith("prompt is too long") and "62,000" in body["error"]["message"]
    assert web.sent() == [] and account_state(web) == "ok"


def test_a_pinned_turn_is_not_refused_for_its_history(make_gateway, emu, home):
    web = start_web(make_gateway, emu, home, "--set", "qwen_web_pin=user")
    first = "p" * 30_000
    reply = web.client.chat.completions.create(model="gpt-4o", user="alice", messages=[
        {"role": "user", "content": first}]).choices[0].message.content
    history = [{"role": "user", "content": first}, {"role": "assistant", "content": reply},
               {"role": "user", "content": "next"}]  # 60,000 characters flattened
    answer = web.client.chat.completions.create(model="gpt-4o", user="alice", messages=history)
    assert answer.choices[0].message.content == "Echo: next"
    assert [b["messages"][0]["content"] for b in web.sent()][1:] == ["next"]  # the pinned chat's new message only
    with pytest.raises(openai.BadRequestError) as e:  # another conversation's first turn: the whole history
        web.client.chat.completions.create(model="gpt-4o", user="bob", messages=history)
    refused(e)
    assert len(web.sent()) == 2 and account_state(web) == "ok"
