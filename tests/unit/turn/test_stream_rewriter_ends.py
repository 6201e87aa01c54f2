"""Where a stream's end is decided (turn/stream_rewriter.py): only every choice's finish makes an answer whole —
`[DONE]` with a choice unfinished is a break (held for the turn to continue, or the client's error), counted as a
cut; `whole` says when what may still come is only Qwen's usage and [DONE]."""

from __future__ import annotations

import json

from qwen_gateway.turn.stream_rewriter import DONE_EARLY, StreamRewriter, stream_error
from qwen_gateway.upstream.dashscope.stream import ChunkNormalizer


class Recorder:
    def __init__(self) -> None:
        self.failed: list[dict] = []

    def feed(self, chunk):
        return [f"data: {c['delta'].get('content', '')}|{c['finish_reason']}\n\n".encode() for c in chunk["choices"]]

    def finish(self):
        return [b"data: [END]\n\n"]

    def fail(self, error):
        self.failed.append(error)
        return [b"data: [FAILED]\n\n"]


def event(content: str | None = None, finish: str | None = None, index: int = 0) -> bytes:
    delta = {} if content is None else {"content": content}
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "qwen-plus",
             "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


def test_done_before_the_finish_is_a_break_not_a_whole_answer():
    rw = StreamRewriter(ChunkNormalizer("m"), Recorder())
    out = rw.run(event("Echo: part") + DONE)
    assert out == b"data: Echo: part|None\n\ndata: [FAILED]\n\n"
    assert rw.error == stream_error(DONE_EARLY + ".") and rw.cuts == 1 and not rw.unfinished_end


def test_done_before_the_finish_is_held_when_the_turn_may_continue():
    rw = StreamRewriter(ChunkNormalizer("m"), Recorder(), holds_breaks=True)
    assert rw(event("Echo: part") + DONE + event("late")) == [b"data: Echo: part|None\n\n"]
    assert rw.broken == stream_error(DONE_EARLY + ".") and rw.error is None and rw.cuts == 1
    assert rw.give_up() == [b"data: [FAILED]\n\n"]


def test_done_with_one_of_two_choices_unfinished_is_a_break():
    rw = StreamRewriter(ChunkNormalizer("m"), Recorder(), choices=2)
    rw.run(event("a", "stop", 0) + event("b", None, 1) + DONE)
    assert rw.error is not None and rw.cuts == 1
    rw = StreamRewriter(ChunkNormalizer("m"), Recorder(), choices=2)
    assert rw.run(event("a", "stop", 0) + event("b", "stop", 1) + DONE).endswith(b"[END]\n\n") and rw.error is None


def test_whole_once_every_choice_finished():
    rw = StreamRewriter(ChunkNormalizer("m"), Recorder(), choices=2)
    rw(event("a", "stop", 0))
    assert not rw.whole
    rw(event("b", "length", 1))
    assert rw.whole and not rw.finished  # usage and [DONE] may still come
    rw(DONE)
    assert rw.whole and rw.finished and rw.error is None


def test_a_finished_answer_whose_done_never_came_is_whole_its_usage_unknown():
    rw = StreamRewriter(ChunkNormalizer("m"), Recorder())
    rw(event("ok", "stop"))
    assert rw.upstream_end() == [b"data: [END]\n\n"]
    assert rw.unfinished_end and rw.error is None and rw.normalizer.usage is None
