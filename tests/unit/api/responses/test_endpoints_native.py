"""/v1/responses' pass-through to Qwen's own Responses API (api/responses/endpoints.py with native.py): a turn
answered there is stored under the gateway's id with where Qwen holds the conversation; the next turn of the
same chain, on the same account, continues there by Qwen's id with only its new items; on another account, or
over the WebSocket, it does not."""

from __future__ import annotations

import pytest

from qwen_gateway.accounts import KEY, Credential
from qwen_gateway.api.responses.endpoints import responses_endpoint
from qwen_gateway.api.responses.state import state
from qwen_gateway.stores.responses import ResponseStore
from qwen_gateway.exchange import ClientRequest, Exchange, Retry, RetryReason
from qwen_gateway.providers import Leg

BASE = "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"
HERE, THERE = Credential("here", KEY, BASE, "sk-1"), Credential("there", KEY, BASE, "sk-2")
USAGE = {"input_tokens": 1200, "output_tokens": 3, "input_tokens_details": {"cached_tokens": 0}}


@pytest.fixture
def store(tmp_path):
    return ResponseStore(tmp_path / "responses.sqlite3")


async def turn(endpoint, body: dict, cred: Credential = HERE) -> tuple[Exchange, dict | None]:
    """One request through the endpoint as the engine runs a pass-through: translated, then its own body."""
    ex = Exchange(ClientRequest("POST", "/v1/responses", "http://x/v1/responses"))
    ex.body, ex.requested_model = body, body["model"]
    await endpoint.prepare(body, ex)
    ex.chat_body = endpoint.to_chat(body, ex)
    ex.attempt.cred, ex.attempt.model = cred, "qwen3-coder-plus"
    own = endpoint.own_body(body, ex)
    if own is not None:
        ex.attempt.leg, ex.attempt.body = Leg("responses", passthrough=True), own
    return ex, own


async def answered(endpoint, ex: Exchange, qwen_id: str, text: str) -> dict:
    response, usage = endpoint.from_own({"id": qwen_id, "status": "completed", "usage": USAGE, "output": [
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}]}, ex)
    assert usage is not None and usage["prompt_tokens"] == USAGE["input_tokens"]  # in the chat form, for the ledger
    endpoint.finished(ex, response)
    if ex.turn.write is not None:  # the store's worker thread
        await ex.turn.write
    return response


async def test_a_chain_continues_on_qwens_id_with_only_its_new_items(store):
    endpoint = responses_endpoint(lambda: store)
    ex, own = await turn(endpoint, {"model": "qwen3-coder-plus", "instructions": "be brief", "input": "one"})
    assert own is not None and "previous_response_id" not in own and own["store"] is True
    assert "sent to Qwen's own Responses API (qwen_responses_native)" in ex.notes  # said on the flow
    first = await answered(endpoint, ex, "resp_qwen1", "1")
    assert first["id"] != "resp_qwen1" and first["id"].startswith("resp_")  # the gateway's own id
    chain = store.history(first["id"], ex.key.name)["native"]
    assert {k: chain[k] for k in ("account", "id", "messages")} == {"account": "here", "id": "resp_qwen1",
                                                                   "messages": 2}
    ex2, own2 = await turn(endpoint, {"model": "qwen3-coder-plus", "instructions": "be brief", "input": "two",
                                      "previous_response_id": first["id"]})
    assert own2 is not None and own2["previous_response_id"] == "resp_qwen1"
    assert own2["input"] == [{"type": "message", "role": "user", "content": "two"}]
    assert any("previous_response_id" in n for n in ex2.notes)
    second = await answered(endpoint, ex2, "resp_qwen2", "2")
    assert store.get(second["id"], ex2.key.name)["previous_response_id"] == first["id"]  # the client's ids
    assert store.history(second["id"], ex2.key.name)["native"]["messages"] == 4


async def test_after_qwen_said_it_no_longer_holds_it_the_turn_is_translated(store):
    endpoint = responses_endpoint(lambda: store)
    ex, _ = await turn(endpoint, {"model": "qwen3-coder-plus", "input": "one"})
    first = await answered(endpoint, ex, "resp_qwen1", "1")
    body = {"model": "qwen3-coder-plus", "input": "two", "previous_response_id": first["id"]}
    ex2 = Exchange(ClientRequest("POST", "/v1/responses", "http://x/v1/responses"))
    ex2.body = body
    await endpoint.prepare(body, ex2)
    ex2.chat_body = endpoint.to_chat(body, ex2)
    ex2.attempt.cred, ex2.attempt.model = HERE, "qwen3-coder-plus"
    ex2.attempt.retries.append(Retry(RetryReason.NEW_CHAT, "here"))
    assert endpoint.own_body(body, ex2) is None  # translated: the whole conversation, with the cache markers


async def test_a_conversation_qwen_does_not_hold_is_translated(store):
    """Another account, or a client resending its whole conversation: Qwen's session cache would read none of
    it (and write it all again); the chat path's cache markers read it."""
    endpoint = responses_endpoint(lambda: store)
    ex, _ = await turn(endpoint, {"model": "qwen3-coder-plus", "input": "one"})
    first = await answered(endpoint, ex, "resp_qwen1", "1")
    other, own = await turn(endpoint, {"model": "qwen3-coder-plus", "input": "two",
                                       "previous_response_id": first["id"]}, THERE)
    assert own is None and any("does not hold this conversation" in n for n in other.notes)
    _, own = await turn(endpoint, {"model": "qwen3-coder-plus", "input": [
        {"role": "user", "content": "one"}, {"role": "assistant", "content": "1"}, {"role": "user", "content": "2"}]})
    assert own is None  # the whole history resent, no chain


async def test_a_turn_not_stored_and_a_websocket_turn_are_translated(store):
    endpoint = responses_endpoint(lambda: store)
    ex, own = await turn(endpoint, {"model": "qwen3-coder-plus", "input": "one", "store": False})
    assert own is None and any(n.startswith("translated, not sent to Qwen's own Responses API: store false")
                               for n in ex.notes)
    ws = Exchange(ClientRequest("POST", "/v1/responses", "http://x/v1/responses"))
    body = {"model": "qwen3-coder-plus", "input": "hi"}
    ws.body = body
    state(ws).socket = True
    ws.chat_body = endpoint.to_chat(body, ws)
    ws.attempt.cred = HERE
    assert endpoint.own_body(body, ws) is None
