"""Background responses (api/responses/background.py): what `background: true` needs, and a run's events kept
for a later stream (every one after `starting_after`) and its Response as it stands."""

from __future__ import annotations

import pytest

from qwen_gateway.api.responses import background
from qwen_gateway.api.responses.stream import ResponsesStreamTranslator
from qwen_gateway.errors import GatewayError
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.sse import SSEDecoder


@pytest.mark.parametrize("body, param", [({"background": True, "store": False}, "background"),
                                         ({"background": True, "stream": True}, "stream")])
def test_what_a_background_response_cannot_have_is_refused(body, param):
    with pytest.raises(GatewayError) as e:
        background.check(body)
    assert (e.value.status, e.value.param, e.value.code) == (400, param, "unsupported_value")


def test_a_stored_unstreamed_background_response_is_taken():
    background.check({"background": True, "store": True, "stream": False})
    background.check({"background": True})


def run() -> background.Run:
    ex = Exchange(ClientRequest("POST", "/v1/responses", "http://x/v1/responses"))
    queued = {"id": "resp_1", "status": "queued"}
    r = background.Run(ex, queued, ResponsesStreamTranslator({"model": "m"}, response_id="resp_1", created_at=1))
    r.translator.encode = r.record
    return r


def test_a_run_is_queued_until_its_first_event():
    r = run()
    assert r.response() == {"id": "resp_1", "status": "queued"}
    r.translator.feed({"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]})
    assert r.response()["status"] == "in_progress" and r.events


def test_a_run_keeps_every_event_encoded_in_order():
    r = run()
    r.translator.feed({"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]})
    r.translator.finish()
    events = SSEDecoder().feed(r.since(-1))
    assert [e.event for e in events][0] == "response.created" and events[-1].event == "response.completed"
    assert len(events) == len(r.events) and r.response()["status"] == "completed"


def test_a_stream_starting_after_n_gets_the_events_after_it():
    r = run()
    r.translator.feed({"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]})
    r.translator.finish()
    assert r.since(1) == b"".join(r.events[2:]) and r.since(len(r.events)) == b""


def test_a_cancelled_run_reads_cancelled():
    r = run()
    r.translator.feed({"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]})
    r.translator.cancel()
    assert r.response()["status"] == "cancelled"


def test_the_runs_of_another_key_are_not_found():
    runs = background.BackgroundRuns(runner=None, store=None)
    r = run()
    r.ex.key.name = "alice"
    runs.runs["resp_1"] = r
    assert runs.get("resp_1", "alice") is r
    assert runs.get("resp_1", "bob") is None and runs.get("resp_2", "alice") is None


def test_only_finished_runs_beyond_the_limit_are_let_go():
    runs = background.BackgroundRuns(runner=None, store=None)
    for n in range(background.KEEP_RUNS + 3):
        runs.runs[f"resp_{n}"] = r = run()
        if n != 0:  # the oldest is still running
            r.done.set()
    runs._evict()
    assert len(runs.runs) == background.KEEP_RUNS and "resp_0" in runs.runs
    assert "resp_1" not in runs.runs and "resp_3" not in runs.runs and "resp_4" in runs.runs
