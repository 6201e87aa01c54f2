"""/v1/responses' endpoint (api/responses/endpoints.py): a large request is translated by a worker thread, before
the upstream call, with what the small one gets on the loop; more input items than MAX_INPUT_ITEMS are refused
before any is walked."""

from __future__ import annotations

import threading

import pytest

from qwen_gateway.api.responses import endpoints
from qwen_gateway.api.responses.endpoints import OFF_LOOP_ITEMS, large, responses_endpoint
from qwen_gateway.api.responses.request import MAX_INPUT_ITEMS
from qwen_gateway.stores.responses import ResponseStore
from qwen_gateway.errors import GatewayError
from qwen_gateway.exchange import ClientRequest, Exchange


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def exchange() -> Exchange:
    return Exchange(ClientRequest("POST", "/v1/responses", "http://x/v1/responses"))


@pytest.fixture
def endpoint(tmp_path):
    store = ResponseStore(tmp_path / "responses.sqlite3")
    return responses_endpoint(lambda: store)


def test_what_is_large():
    assert not large({"input": [user("a")] * OFF_LOOP_ITEMS}, None)
    assert large({"input": [user("a")] * (OFF_LOOP_ITEMS + 1)}, None)
    assert large({"input": "hi"}, [user("a")] * (OFF_LOOP_ITEMS + 1))  # a WebSocket's own long history
    assert large({"input": "hi", "previous_response_id": "resp_1"}, None)  # a stored conversation is read there
    assert not large({"input": "hi", "previous_response_id": "resp_1"}, [user("a")])  # the socket's, in memory
    # an item named by its id is read from the store, with the stored input it stands in (10,000 items at most)
    assert large({"input": [user("a"), {"type": "item_reference", "id": "msg_1"}]}, None)
    assert not large({"input": [user("a"), {"type": "message", "role": "user", "content": "b"}]}, None)


async def test_a_large_request_is_translated_by_a_worker_thread(endpoint, monkeypatch):
    seen: list[str] = []
    real = endpoints.translate

    def spy(*args, **kw):
        seen.append(threading.current_thread().name)
        return real(*args, **kw)

    monkeypatch.setattr(endpoints, "translate", spy)
    small, big = {"input": [user("a")]}, {"input": [user(f"m{i}") for i in range(OFF_LOOP_ITEMS + 1)]}
    for body in (small, big):
        ex = exchange()
        await endpoint.prepare(body, ex)
        chat = endpoint.to_chat(body, ex)
        assert chat["messages"][-1]["content"] == body["input"][-1]["content"]
    assert seen[0] == threading.main_thread().name and seen[1] != threading.main_thread().name
    assert len(seen) == 2  # translated once each


async def test_more_input_items_than_the_limit_are_refused_before_any_is_walked(endpoint, monkeypatch):
    monkeypatch.setattr(endpoints, "translate", lambda *a, **k: pytest.fail("walked"))
    body = {"input": [user("a")] * (MAX_INPUT_ITEMS + 1)}
    with pytest.raises(GatewayError) as e:
        await endpoint.prepare(body, exchange())
    assert (e.value.status, e.value.code, e.value.param) == (400, "array_above_max_length", "input")
    assert e.value.message == (f"Invalid 'input': array too long. Expected an array with maximum length "
                               f"{MAX_INPUT_ITEMS}, but got an array with length {MAX_INPUT_ITEMS + 1} instead.")


async def test_a_refusal_in_the_worker_thread_is_the_requests(endpoint):
    body = {"input": [user("a")] * (OFF_LOOP_ITEMS + 1), "temperature": "hot"}
    with pytest.raises(GatewayError) as e:
        await endpoint.prepare(body, exchange())
    assert e.value.status == 400 and e.value.param == "temperature"
