"""What other modules tell the turn of an outcome, and read of its live stream (turn/outcome.py): the turn alone
writes `ex.result` and `ex.turn` (tests/repo/test_owners.py), the others call these."""

from __future__ import annotations

from qwen_gateway.api.chat import ChatStreamTranslator
from qwen_gateway.cache_turn import CacheTurn
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.turn import outcome
from qwen_gateway.turn.stream_rewriter import StreamRewriter
from qwen_gateway.upstream.dashscope.stream import ChunkNormalizer


def exchange() -> Exchange:
    return Exchange(ClientRequest("POST", "/v1/responses", "http://127.0.0.1:8080/v1/responses"))


def test_a_transports_end_is_served_unless_it_failed_before():
    ex, failed = exchange(), exchange()
    failed.fail(502, "upstream_error", "no")
    for e in (ex, failed):
        outcome.ended(e)
    assert (ex.result.status, failed.result.status) == (200, 502)


def test_a_client_gone_is_499_with_the_first_reason_kept():
    ex, late = exchange(), exchange()
    outcome.client_left(ex, "the client closed the WebSocket")
    assert (ex.result.status, ex.result.stream_error) == (499, "the client closed the WebSocket")
    outcome.stream_broken(late, "Qwen broke off the answer")
    late.result.status = 200
    outcome.client_left(late, "the client closed the WebSocket")
    assert (late.result.status, late.result.stream_error) == (200, "Qwen broke off the answer")


def test_what_endpoints_tell_lands_on_the_parts():
    ex, verdict, write = exchange(), CacheTurn("conv", 2, 100, 80, 0, None, 0), object()
    outcome.cache_judged(ex, verdict)
    outcome.keep_before_end(ex)
    outcome.keeping(ex, write)
    outcome.translated_already(ex)
    outcome.handed_on(ex)
    assert (ex.result.cache, ex.turn.write) == (verdict, write)
    assert ex.turn.keep_before_end and ex.turn.translated and ex.turn.handed_on


def test_a_whole_answer_has_no_stream_to_read():
    ex = exchange()
    assert not outcome.streamed(ex)
    assert (outcome.stream_translator(ex), outcome.stream_error_code(ex), outcome.finish_reasons(ex)) == (
        None, None, None)


def test_a_streams_translator_error_and_finish_reasons_are_read_through_the_turn():
    ex, translator = exchange(), ChatStreamTranslator(True)
    rw = ex.turn.rewriter = StreamRewriter(ChunkNormalizer("qwen3-coder-plus"), translator)
    assert outcome.streamed(ex) and outcome.stream_translator(ex) is translator
    assert outcome.finish_reasons(ex) == () and outcome.stream_error_code(ex) is None
    rw.normalizer.finish_reasons.update({1: "length", 0: "stop"})
    rw.error = {"message": "broken", "code": "upstream_error"}
    assert outcome.finish_reasons(ex) == ("stop", "length") and outcome.stream_error_code(ex) == "upstream_error"
