"""A Responses WebSocket's messages (api/responses/socket_messages.py), run by the transport (turn/socket_turns.py):
the envelope, the connection's recent responses and the ones a failed continuation evicted, and the `error` event
in the spec's form, echoing the lane's stream_id."""

from __future__ import annotations

import json

import pytest

from helpers.openai_schema import validate_stream_event
from qwen_gateway.api.responses import socket_messages
from qwen_gateway.api.responses.socket_messages import _error_event
from qwen_gateway.errors import GatewayError
from qwen_gateway.turn import socket_turns


def test_websocket_error_events():
    event = _error_event(GatewayError(429, "slow down", code="rate_limit_exceeded", headers={"retry-after": "2"}))
    assert event["type"] == "error" and event["status"] == 429 and event["error"]["code"] == "rate_limit_exceeded"
    assert event["headers"] == {"retry-after": "2"}
    validate_stream_event(event)  # also the spec's ResponseErrorEvent


def test_an_error_event_without_headers_has_none():
    event = _error_event(GatewayError(400, "bad", code="invalid_value", param="input"))
    assert event == {"type": "error", "status": 400, "code": "invalid_value", "message": "bad", "param": "input",
                     "error": {"type": "invalid_request_error", "code": "invalid_value", "message": "bad",
                               "param": "input"}, "sequence_number": 0}


def session() -> socket_messages.ConnectionHistory:
    return socket_messages.ResponsesSocket(endpoint=None, store=None).connected()  # type: ignore[arg-type]


def test_a_connection_keeps_its_newest_responses_only():
    s = session()
    for n in range(socket_messages.KEEP_RESPONSES + 2):
        s.remember(f"resp_{n}", [{"n": n}])
    assert list(s.history) == [f"resp_{n}" for n in range(2, socket_messages.KEEP_RESPONSES + 2)]


def test_a_failed_continuation_evicts_its_response_for_good():
    s = session()
    s.remember("resp_1", [])
    s.evict("resp_1")
    assert "resp_1" not in s.history and "resp_1" in s.evicted
    for n in range(socket_messages.KEEP_EVICTED):
        s.evict(f"resp_x{n}")
    assert "resp_1" not in s.evicted and len(s.evicted) == socket_messages.KEEP_EVICTED


class Sent:
    """A session that records what is sent to the client."""

    memory = None

    def __init__(self) -> None:
        self.frames: list[dict] = []

    def send(self, data: bytes) -> None:
        self.frames.append(json.loads(data))


def turns() -> socket_turns.SocketTurns:
    """The transport's turns speaking the Responses API's messages (as components.sockets wires them)."""
    return socket_turns.SocketTurns(runner=None, dialect=socket_messages.ResponsesSocket(  # type: ignore[arg-type]
        endpoint=None, store=None))  # type: ignore[arg-type]


@pytest.mark.parametrize("message", [{"type": "response.update"}, ["response.create"], None])
async def test_a_message_that_is_no_response_create_gets_an_error_event(message):
    sent = Sent()
    await turns().message(sent, message, 10, lane="s1")  # type: ignore[arg-type]
    (event,) = sent.frames
    assert (event["type"], event["status"], event["code"], event["param"], event["stream_id"]) == (
        "error", 400, "invalid_message", "type", "s1")


@pytest.mark.parametrize("kind", ["response.processed", "response.cancel"])
async def test_acknowledgements_need_no_answer(kind):
    sent = Sent()
    await turns().message(sent, {"type": kind}, 10)  # type: ignore[arg-type]
    assert sent.frames == []
