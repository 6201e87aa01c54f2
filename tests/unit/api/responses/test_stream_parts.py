"""The pieces of a Responses stream (api/responses/stream_parts.py): an event's SSE encoding and the code a failed
Response's error carries."""

from __future__ import annotations

import json

import pytest

from qwen_gateway.api.responses.stream_parts import error_code, sse_event
from qwen_gateway.sse import SSEDecoder


def test_an_event_is_sent_under_its_type():
    (event,) = SSEDecoder().feed(sse_event({"type": "response.created", "n": "é"}))
    assert event.event == "response.created" and json.loads(event.data) == {"type": "response.created", "n": "é"}


@pytest.mark.parametrize("error, code", [
    ({"code": "rate_limit_exceeded", "type": "requests"}, "rate_limit_exceeded"),  # Codex waits and retries
    ({"code": "context_length_exceeded", "type": "invalid_request_error"}, "context_length_exceeded"),
    ({"code": "invalid_value", "type": "invalid_request_error"}, "invalid_prompt"),
    ({"type": "server_error", "code": "stream_idle_timeout"}, "server_error"),
    ({}, "server_error"),
])
def test_a_failed_responses_error_code(error, code):
    assert error_code(error) == code
