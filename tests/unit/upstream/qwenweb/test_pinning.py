"""Pinned multi-turn on web accounts (upstream/qwenweb/pinning.py; which request continues a pin and the store of
pins: test_pins.py): the turn's body, one generation per chat at a time, and the answer's frames read
through to pin the chat at its new last response."""

from __future__ import annotations

import asyncio
import json

import pytest

from qwen_gateway import errors
from qwen_gateway.accounts import WEB, Credential
from qwen_gateway.errors import GatewayError
from qwen_gateway.upstream.qwenweb import errors as web_errors
from qwen_gateway.upstream.qwenweb.pinning import PLAN, Pinning
from qwen_gateway.upstream.qwenweb.pins import PinStore
from qwen_gateway.upstream.qwenweb.upstream import QwenWeb

CRED = Credential(account="chat", token="tok", base_url="http://127.0.0.1:1", kind=WEB)
U1, A1, U2 = ({"role": "user", "content": "one"}, {"role": "assistant", "content": "Echo: one"},
              {"role": "user", "content": "two"})


@pytest.fixture
def web(tmp_path):
    return QwenWeb(0, pinning=Pinning(PinStore(tmp_path / "pins.sqlite3", ttl=60), wait=0.2))


def body_for(web: QwenWeb, messages: list[dict], user: str | None = "alice") -> dict:
    return web.chat_body({"messages": messages, **({"user": user} if user else {})}, model="qwen3.7-plus",
                         cred=CRED, notes=[], learned=None)


class Answer:
    """The engine's answer: frames as the web API sends them."""

    def __init__(self, frames: list[dict], status: int = 200) -> None:
        self.status_code, self.headers = status, {"content-type": "text/event-stream"}
        self.raw = b"".join(b"data: " + json.dumps(f).encode() + b"\n\n" for f in frames)
        self.closed = False

    async def aread(self) -> bytes:
        return self.raw

    async def aiter_raw(self):
        for i in range(0, len(self.raw), 7):  # frames cut anywhere
            yield self.raw[i:i + 7]

    async def aclose(self) -> None:
        self.closed = True


def finished(rid: str) -> list[dict]:
    return [{"response.created": {"chat_id": "c1", "parent_id": None, "response_id": rid}},
            {"choices": [{"delta": {"role": "assistant", "content": "Echo", "phase": "answer", "status": "typing"}}]},
            {"choices": [{"delta": {"role": "assistant", "content": "", "phase": "answer", "status": "finished"}}]}]


async def run_turn(web: QwenWeb, body: dict, frames: list[dict]) -> None:
    resp = web.opened(body, Answer(frames))  # type: ignore[arg-type]
    async for _ in resp.aiter_raw():
        pass
    await resp.aclose()


async def fetch_new_chat(wire):
    return 200, {}, json.dumps({"success": True, "data": {"id": "c1"}}).encode()


async def test_a_finished_turn_pins_its_chat_and_the_next_sends_only_the_new_message(web):
    first = await web.prepare(CRED, body_for(web, [U1]), fetch_new_chat)
    assert isinstance(first, dict) and first["chat_id"] == "c1" and first["parent_id"] is None
    assert PLAN not in web.wire(CRED, "", first, user_agent="ua", stream=True, attempt=0).body
    await run_turn(web, first, finished("r1"))
    nxt = await web.prepare(CRED, body_for(web, [U1, A1, U2]), fetch_new_chat)
    assert isinstance(nxt, dict)
    assert (nxt["chat_id"], nxt["parent_id"], nxt["messages"][0]["parentId"]) == ("c1", "r1", "r1")
    assert [m["content"] for m in nxt["messages"]] == ["two"]
    await run_turn(web, nxt, finished("r2"))
    assert web.pinning.store.get(nxt[PLAN]["key"]).response_id == "r2"


async def test_no_user_no_pin(web):
    assert PLAN not in body_for(web, [U1], user=None)


async def test_a_second_turn_on_the_pin_waits_for_the_first_then_goes_to_a_new_chat(web):
    first = await web.prepare(CRED, body_for(web, [U1]), fetch_new_chat)
    await run_turn(web, first, finished("r1"))
    a = await web.prepare(CRED, body_for(web, [U1, A1, U2]), fetch_new_chat)
    assert a["parent_id"] == "r1"  # holds the chat
    waiting = asyncio.ensure_future(web.prepare(CRED, body_for(web, [U1, A1, {"role": "user", "content": "bis"}]),
                                                fetch_new_chat))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await run_turn(web, a, finished("r2"))
    b = await waiting
    assert b["parent_id"] is None and "Conversation so far" in b["messages"][0]["content"]


async def test_a_turn_that_waits_too_long_is_a_429(web):
    first = await web.prepare(CRED, body_for(web, [U1]), fetch_new_chat)
    await run_turn(web, first, finished("r1"))
    await web.prepare(CRED, body_for(web, [U1, A1, U2]), fetch_new_chat)  # never closed
    with pytest.raises(GatewayError) as e:
        await web.prepare(CRED, body_for(web, [U1, A1, U2]), fetch_new_chat)
    assert e.value.status == 429 and e.value.code == "conversation_busy"


async def test_a_broken_or_unsent_turn_frees_the_chat_and_forgets_the_pin(web):
    first = await web.prepare(CRED, body_for(web, [U1]), fetch_new_chat)
    await run_turn(web, first, finished("r1"))
    a = await web.prepare(CRED, body_for(web, [U1, A1, U2]), fetch_new_chat)
    await run_turn(web, a, finished("r2")[:2])  # no end frame
    assert web.pinning.store.get(a[PLAN]["key"]) is None
    b = await web.prepare(CRED, body_for(web, [U1, A1, U2]), fetch_new_chat)
    assert b["parent_id"] is None  # not waiting: the chat was freed


async def test_an_abandoned_send_frees_the_chat(web):
    first = await web.prepare(CRED, body_for(web, [U1]), fetch_new_chat)
    await run_turn(web, first, finished("r1"))
    a = await web.prepare(CRED, body_for(web, [U1, A1, U2]), fetch_new_chat)
    web.abandoned(a)
    b = await web.prepare(CRED, body_for(web, [U1, A1, U2]), fetch_new_chat)
    assert b["parent_id"] == "r1"


def test_a_stale_parent_or_a_busy_chat_is_tried_once_more_in_a_new_chat():
    for details in ("The parent message is not the chat's last response!", "The chat is in progress!"):
        assert web_errors.envelope("Bad_Request", details, None).kind == errors.STALE
    assert web_errors.envelope("Bad_Request", "Something wrong with request!", None).kind == errors.SERVER


async def test_a_turn_whose_pin_moved_on_is_refused_when_the_whole_conversation_is_too_long(web):
    """Its new message fits, so it was planned on the pin; the pin moved on while it waited: the whole
    conversation would go to a new chat, and that is over Qwen Chat's size rule: a 400 before any request, and
    the chat it waited for is free."""
    u1, a1 = {"role": "user", "content": "p" * 30_000}, {"role": "assistant", "content": "Echo: " + "p" * 30_000}
    fetched: list = []

    async def fetch(wire):
        fetched.append(wire)
        return await fetch_new_chat(wire)

    first = await web.prepare(CRED, body_for(web, [u1]), fetch)
    await run_turn(web, first, finished("r1"))
    a = await web.prepare(CRED, body_for(web, [u1, a1, U2]), fetch)
    assert a["parent_id"] == "r1" and len(fetched) == 1  # the pinned turn: no new chat
    waiting = asyncio.ensure_future(web.prepare(CRED, body_for(web, [u1, a1, {"role": "user", "content": "bis"}]),
                                                fetch))
    await asyncio.sleep(0.05)
    await run_turn(web, a, finished("r2"))
    with pytest.raises(GatewayError) as e:
        await waiting
    assert e.value.status == 400 and e.value.code == "context_length_exceeded" and len(fetched) == 1
    assert "c1" not in web.pinning._locks  # the chat is free
    with pytest.raises(GatewayError):  # no pin to continue: refused at once, as the body is made
        body_for(web, [u1, a1, U2], user="bob")
