"""The record's view of the turn's stream (live_stream.py): the turn's own rewriter has that shape, and the record
holds it without importing the turn."""

from __future__ import annotations

from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.live_stream import LiveStream
from qwen_gateway.turn.assembler import ChunkAssembler
from qwen_gateway.turn.stream_rewriter import StreamRewriter
from qwen_gateway.upstream.qwenweb.stream import WebChunks


def test_the_turns_rewriter_is_a_live_stream_on_the_record():
    rw = StreamRewriter(WebChunks("m"), ChunkAssembler())
    assert isinstance(rw, LiveStream)
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://127.0.0.1:8080/v1/chat/completions"))
    ex.turn.rewriter = rw
    assert ex.turn.rewriter is rw and not rw.finished and rw.error is None and not rw.throttled


def test_what_is_not_a_stream_is_no_live_stream():
    assert not isinstance(object(), LiveStream)
