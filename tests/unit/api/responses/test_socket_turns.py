"""One `response.create` on a Responses WebSocket (api/responses/socket_turns.py): the envelope, the lane's
stream_id on every event, the connection's recent responses and the ones a failed continuation evicted, and the
`error` event in the spec's form."""

from __future__ import annotations

from helpers.openai_schema import validate_stream_event
from qwen_gateway.api.responses.socket_turns import _error_event
from qwen_gateway.errors import GatewayError


def test_websocket_error_events():
    event = _error_event(GatewayError(429, "slow down", code="rate_limit_exceeded", headers={"retry-after": "2"}))
    assert event["type"] == "error" and event["status"] == 429 and event["error"]["code"] == "rate_limit_exceeded"
    assert event["headers"] == {"retry-after": "2"}
    validate_stream_event(event)  # also the spec's ResponseErrorEvent
