"""Background responses (api/responses/background.py): what `background: true` needs, and a run's record — its
events kept for a later stream (every one after `starting_after`) and its Response as it stands. The runner that
holds and runs them is turn/background.py's (tests/unit/turn/test_background.py)."""

from __future__ import annotations

import pytest

from qwen_gateway.api.responses import background
from qwen_gateway.api.responses.stream import ResponsesStreamTranslator
from qwen_gateway.errors import GatewayError
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.sse import SSEDecoder
from qwen_gateway.turn.background import Run


@pytest.mark.parametrize("body, param", [({"background": True, "store": False}, "background"),
                                         ({"background": True, "stream": True}, "stream")])
def test_what_a_background_response_cannot_have_is_refused(body, param):
    with pytest.raises(GatewayError) as e:
        background.check(body)
    assert (e.value.status, e.value.param, e.value.code) == (400, param, "unsupported_value")


def test_a_stored_unstreamed_background_response_is_taken():
    background.check({"background": True, "store": True, "stream": False})
    background.check({"background": True})


def run() -> Run:
    """A run of a Responses record, as background.start makes one."""
    ex = Exchange(ClientRequest("POST", "/v1/responses", "http://x/v1/responses"))
    queued = {"id": "resp_1", "status": "queued"}
    record = background.ResponsesRun(queued, ResponsesStreamTranslator({"model": "m"}, response_id="resp_1",
                                                                       created_at=1))
    record.translator.encode = record.record
    return Run(ex, record)


def record(r: Run) -> background.ResponsesRun:
    assert isinstance(r.record, background.ResponsesRun)
    return r.record


def test_a_run_is_queued_until_its_first_event():
    r = run()
    assert r.response() == {"id": "resp_1", "status": "queued"}
    record(r).translator.feed({"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]})
    assert r.response()["status"] == "in_progress" and record(r).events


def test_a_run_keeps_every_event_encoded_in_order():
    r = run()
    record(r).translator.feed({"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]})
    record(r).translator.finish()
    events = SSEDecoder().feed(r.since(-1))
    assert [e.event for e in events][0] == "response.created" and events[-1].event == "response.completed"
    assert len(events) == len(record(r).events) and r.response()["status"] == "completed"


def test_a_stream_starting_after_n_gets_the_events_after_it():
    r = run()
    record(r).translator.feed({"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]})
    record(r).translator.finish()
    assert r.since(1) == b"".join(record(r).events[2:]) and r.since(len(record(r).events)) == b""


def test_a_cancelled_run_reads_cancelled():
    r = run()
    record(r).translator.feed({"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]})
    record(r).translator.cancel()
    assert r.response()["status"] == "cancelled"
