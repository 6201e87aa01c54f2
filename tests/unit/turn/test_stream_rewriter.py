"""The `flow.response.stream` callable (turn/stream_rewriter.py): Qwen's SSE bytes through the upstream's chunk
source and a client translator, the stream's end, errors inside the stream, and mitmproxy's contract (never
raise, never b"" mid-stream)."""

from __future__ import annotations

import json

from qwen_gateway.turn.stream_rewriter import StreamRewriter, stream_error
from qwen_gateway.upstream.dashscope.stream import ChunkNormalizer


class Recorder:
    """A client translator that writes each chunk's content as one event, so what went out can be read back."""

    def __init__(self) -> None:
        self.failed: list[dict] = []

    def feed(self, chunk):
        return [f"data: {c['delta'].get('content', '')}|{c['finish_reason']}\n\n".encode() for c in chunk["choices"]]

    def finish(self):
        return [b"data: [END]\n\n"]

    def fail(self, error):
        self.failed.append(error)
        return [b"data: [FAILED]\n\n"]


def event(content: str | None = None, finish: str | None = None, **delta) -> bytes:
    if content is not None:
        delta["content"] = content
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "qwen-plus",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def rewriter(**kw) -> StreamRewriter:
    return StreamRewriter(ChunkNormalizer("gpt-4o"), Recorder(), **kw)


def test_events_split_anywhere_come_out_whole_and_done_ends_the_stream():
    rw = rewriter()
    raw = event("Hel") + event("lo", "stop") + b"data: [DONE]\n\n"
    out = [part for i in range(0, len(raw), 7) for part in rw(raw[i:i + 7])]
    assert out == [b"data: Hel|None\n\n", b"data: lo|stop\n\n", b"data: [END]\n\n"]
    assert rw.finished and rw.error is None
    assert rw(event("late")) == [] and rw(b"") == []  # nothing after the end


def test_a_finished_answer_without_done_still_ends_cleanly():
    rw = rewriter()
    assert rw.run(event("ok", "stop")) == b"data: ok|stop\n\ndata: [END]\n\n"
    assert rw.error is None


def test_a_stream_cut_before_any_finish_reason_fails():
    rw = rewriter()
    assert rw.run(event("half an ans")) == b"data: half an ans|None\n\ndata: [FAILED]\n\n"
    assert rw.error == stream_error("Qwen ended the stream before the answer was complete.")


def test_an_error_event_ends_the_stream_in_openais_words():
    rw = rewriter()
    out = rw(b'data: {"error": {"message": "model overloaded", "code": "InternalError", "type": "odd"}}\n\n')
    assert out == [b"data: [FAILED]\n\n"]
    # Qwen's own error type is not one of OpenAI's: server_error
    assert rw.error == {"message": "model overloaded", "type": "server_error", "code": "InternalError", "param": None}
    assert not rw.throttled


def test_a_throttling_error_event_is_a_rate_limit_the_pool_hears_of():
    rw = rewriter()
    rw(b'data: {"error": {"message": "slow down", "code": "Throttling.RateQuota"}}\n\n')
    assert rw.throttled
    assert rw.error == {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded", "param": None}


def test_error_finish_is_an_error_never_the_models_answer():
    rw = rewriter()
    out = rw(event("Requests rate limit exceeded (TPM)", "error_finish"))
    assert out == [b"data: [FAILED]\n\n"] and rw.throttled
    assert rw.error["code"] == "rate_limit_exceeded"


def test_an_event_that_is_not_json_is_skipped_and_counted():
    rw = rewriter()
    assert rw(b"data: {not json\n\n" + event("fine", "stop")) == [b"data: fine|stop\n\n"]
    assert rw.bad_events == 1 and not rw.finished


def test_a_translator_that_raises_ends_the_stream_instead_of_raising():
    rw = rewriter()
    rw.translator.feed = lambda chunk: 1 / 0  # type: ignore[method-assign]
    assert rw(event("x")) == [b"data: [FAILED]\n\n"]
    assert rw.error == stream_error("gateway stream error: ZeroDivisionError")


def test_capture_keeps_at_most_capture_limit_bytes():
    rw = rewriter(capture_limit=10)
    rw.run(event("abcdefghij", "stop"))
    assert bytes(rw.captured) == b"data: abcd" and rw.capture_truncated
    assert rw.first_byte_at is not None and rw.last_byte_at is not None


def test_nothing_is_captured_without_a_limit():
    rw = rewriter()
    rw.run(event("abc", "stop"))
    assert rw.captured == bytearray() and not rw.capture_truncated


def test_a_parked_end_goes_out_only_at_the_end_of_the_stream():
    rw = rewriter()
    parked: list[int] = []
    rw.park = lambda: parked.append(1)
    assert rw(event("a", "stop") + b"data: [DONE]\n\n") == [b"data: a|stop\n\n"]
    assert parked == [1] and rw.held == [b"data: [END]\n\n"]
    assert rw(b"") == [b"data: [END]\n\n"] and rw.held is None


def test_a_failed_stream_calls_park_too_and_a_failing_park_is_contained():
    rw = rewriter()

    def park():
        raise RuntimeError("database gone")

    rw.park = park
    assert rw.run(event("cut")) == b"data: cut|None\n\ndata: [FAILED]\n\n"  # the error out, park's failure logged
    assert rw.park is None


def test_unkept_swaps_the_held_end_for_the_translators_failure_event():
    rw = rewriter()
    rw.translator.unkept = lambda held, error: [b"data: not kept\n\n"]  # type: ignore[attr-defined]
    rw.park = lambda: None
    rw(event("a", "stop") + b"data: [DONE]\n\n")
    rw.unkept(stream_error("could not keep it"))
    assert rw(b"") == [b"data: not kept\n\n"]


def test_a_break_the_turn_may_continue_is_held_then_given_up_or_resumed():
    """`holds_breaks`: the turn may continue the answer, so a break is held (the client hears nothing of it) until
    the turn resumes the stream with a continuation, or gives up and the client gets the break's error after all."""
    rw = rewriter()
    rw.holds_breaks = True
    assert rw(event("Hel")) == [b"data: Hel|None\n\n"]
    assert rw(event("Requests rate limit exceeded, please try again later.", "error_finish")) == []
    assert rw.broken is not None and rw.error is None and rw.throttled
    assert rw.give_up() == [b"data: [FAILED]\n\n"] and rw.error == rw.translator.failed[0] and rw.broken is None
    rw = rewriter()
    rw.holds_breaks = True
    rw(event("Hel"))
    assert rw.upstream_end() == [] and rw.broken == stream_error("Qwen ended the stream before the answer was complete.")
    rw.resume()
    assert rw(event("lo", "stop") + b"data: [DONE]\n\n") == [b"data: lo|stop\n\n", b"data: [END]\n\n"]
    assert rw.error is None and rw.broken is None and not rw.throttled


def test_the_gateways_own_end_is_never_held():
    rw = rewriter()
    rw.holds_breaks = True
    rw(event("Hel"))
    assert rw.ended(stream_error("stopping", "gateway_shutting_down")) == [b"data: [FAILED]\n\n"]
    rw = rewriter()
    rw.holds_breaks = True
    rw(event("Hel") + event(None, "error_finish"))  # held, then the gateway stops before it is continued
    assert rw.broken is not None
    assert rw.ended(stream_error("stopping", "gateway_shutting_down")) == [b"data: [FAILED]\n\n"]
    assert rw.error is not None and rw.error["code"] == "gateway_shutting_down"
