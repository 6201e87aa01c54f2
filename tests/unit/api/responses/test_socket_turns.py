"""One `response.create` on a Responses WebSocket (api/responses/socket_turns.py): the envelope, the lane's
stream_id on every event, the connection's recent responses and the ones a failed continuation evicted, and the
`error` event in the spec's form."""

from __future__ import annotations

import json

import pytest

from helpers.openai_schema import validate_stream_event
from qwen_gateway.api.responses import socket_turns
from qwen_gateway.api.responses.socket_turns import _error_event
from qwen_gateway.errors import GatewayError


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


def test_events_of_a_lane_echo_its_stream_id_and_others_do_not():
    assert json.loads(socket_turns.lane_encoder("s1")({"type": "x"})) == {"type": "x", "stream_id": "s1"}
    assert socket_turns.lane_encoder(None)({"type": "x", "text": "é"}) == '{"type":"x","text":"é"}'.encode()


def session() -> socket_turns.SocketSession:
    return socket_turns.SocketSession(flow=None, upgrade=None, ws=None, writer=None)


def test_a_connection_keeps_its_newest_responses_only():
    s = session()
    for n in range(socket_turns.KEEP_RESPONSES + 2):
        s.remember(f"resp_{n}", [{"n": n}])
    assert list(s.history) == [f"resp_{n}" for n in range(2, socket_turns.KEEP_RESPONSES + 2)]


def test_a_failed_continuation_evicts_its_response_for_good():
    s = session()
    s.remember("resp_1", [])
    s.evict("resp_1")
    assert "resp_1" not in s.history and "resp_1" in s.evicted
    for n in range(socket_turns.KEEP_EVICTED):
        s.evict(f"resp_x{n}")
    assert "resp_1" not in s.evicted and len(s.evicted) == socket_turns.KEEP_EVICTED


class Sent:
    """A session that records what is sent to the client."""

    def __init__(self) -> None:
        self.frames: list[dict] = []

    def send(self, data: bytes) -> None:
        self.frames.append(json.loads(data))


@pytest.mark.parametrize("message", [{"type": "response.update"}, ["response.create"], None])
async def test_a_message_that_is_no_response_create_gets_an_error_event(message):
    turns = socket_turns.SocketTurns(runner=None, endpoint=None, store=None)
    sent = Sent()
    await turns.message(sent, message, 10, lane="s1")
    (event,) = sent.frames
    assert (event["type"], event["status"], event["code"], event["param"], event["stream_id"]) == (
        "error", 400, "invalid_message", "type", "s1")


@pytest.mark.parametrize("kind", ["response.processed", "response.cancel"])
async def test_acknowledgements_need_no_answer(kind):
    turns = socket_turns.SocketTurns(runner=None, endpoint=None, store=None)
    sent = Sent()
    await turns.message(sent, {"type": kind}, 10)
    assert sent.frames == []
