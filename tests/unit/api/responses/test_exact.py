"""Responses streams complete and exact (issue 51, item 1): the snapshots a stream sends carry the fields the Open
Responses spec requires besides OpenAI's, with the values used. The whole Response's: test_output.py; a tool output
answers a call: test_items_in.py; the compact endpoint needs a model: test_request.py. A failed WebSocket continuation evicting its previous response: tests/e2e/test_e2e_responses_exact.py."""

from __future__ import annotations

import json

from helpers.openai_schema import validate_stream_event
from qwen_gateway.api.responses.stream import ResponsesStreamTranslator
from qwen_gateway.sse import SSEDecoder

USED = {"temperature": 1.0, "top_p": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}


def sampling_of(response: dict) -> dict:
    return {k: response[k] for k in USED}


def events(translator: ResponsesStreamTranslator, chunks: list[dict], end: str = "finish") -> list[dict]:
    raw = b"".join(b for c in chunks for b in translator.feed(c))
    raw += b"".join(translator.finish() if end == "finish" else translator.fail({"message": "broken"}))
    out = [json.loads(e.data) for e in SSEDecoder().feed(raw)]
    for e in out:
        validate_stream_event(e)
    return out


def delta(text: str, finish: str | None = None) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


# ---- completed_at ----------------------------------------------------------------------------------------------


def test_stream_snapshots_carry_completed_at_only_at_completion():
    out = events(ResponsesStreamTranslator({"model": "m"}, response_id="r", created_at=1), [delta("hi", "stop")])
    snaps = {e["type"]: e["response"] for e in out if "response" in e}
    assert snaps["response.created"]["completed_at"] is None and snaps["response.in_progress"]["completed_at"] is None
    assert isinstance(snaps["response.completed"]["completed_at"], int)
    assert all(sampling_of(r) == USED for r in snaps.values())


def test_incomplete_failed_and_unkept_streams_have_none():
    cut = events(ResponsesStreamTranslator({}, response_id="r", created_at=1), [delta("hi", "length")])
    assert cut[-1]["type"] == "response.incomplete" and cut[-1]["response"]["completed_at"] is None
    broken = events(ResponsesStreamTranslator({}, response_id="r", created_at=1), [delta("hi")], end="fail")
    assert broken[-1]["type"] == "response.failed" and broken[-1]["response"]["completed_at"] is None
    t = ResponsesStreamTranslator({}, response_id="r", created_at=1)
    held = t.feed(delta("hi", "stop")) + t.finish()
    t.unkept(held, {"message": "not stored"})
    assert t.response()["status"] == "failed" and t.response()["completed_at"] is None


# ---- a tool output answers a call ------------------------------------------------------------------------------


# ---- the compact endpoint needs a model ------------------------------------------------------------------------

