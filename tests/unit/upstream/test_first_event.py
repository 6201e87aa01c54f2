"""A streamed answer's first event, read before the client hears anything (upstream/first_event.py): an error there
is a refusal in every SSE shape Qwen sends it (its class kept: a 400 stays a 400); anything else is the answer,
its first bytes replayed exactly, and a stream that breaks before its first event hands the break on as it came."""

from __future__ import annotations

import json

import pytest

from qwen_gateway.errors import CLIENT, SERVER, THROTTLE, ConnectionFailed
from qwen_gateway.upstream.dashscope.stream import ChunkNormalizer
from qwen_gateway.upstream.first_event import first_event

INSPECTED = {"code": "data_inspection_failed", "message": "Input data may contain inappropriate content.",
             "type": "invalid_request_error", "param": None}
ROLE = b'data: {"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
TEXT = b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'


class Answer:
    status_code, headers = 200, {"content-type": "text/event-stream"}

    def __init__(self, *parts: bytes | Exception) -> None:
        self.parts, self.closed = parts, False

    async def aiter_raw(self):
        for part in self.parts:
            if isinstance(part, Exception):
                raise part
            yield part

    async def aclose(self) -> None:
        self.closed = True


async def body(resp) -> bytes:
    return b"".join([chunk async for chunk in resp.aiter_raw()])


@pytest.mark.parametrize("shape", [
    b"data: " + json.dumps({"error": INSPECTED}).encode() + b"\n\n",
    b"event:error\ndata:" + json.dumps(INSPECTED).encode() + b"\n\n",  # the error itself as the data
    b"event:error\ndata:data: " + json.dumps({"error": INSPECTED, "id": "chatcmpl-1"}).encode() + b"\n\n",  # wrapped
    b"event: error\ndata: " + json.dumps("data: " + json.dumps({"error": INSPECTED})).encode() + b"\n\n",  # a string
])
async def test_an_error_first_is_a_refusal_that_keeps_its_words_and_class(shape):
    _, refused = await first_event(Answer(shape[:7], shape[7:]), lambda: ChunkNormalizer("qwen-plus"))
    assert refused is not None and refused.kind == CLIENT and refused.status == 400
    assert refused.message == INSPECTED["message"] and refused.code == "data_inspection_failed"


async def test_an_error_finish_first_is_a_refusal_too():
    finish = b'data: {"choices":[{"index":0,"delta":{"content":"Requests rate limit exceeded, please try again ' \
             b'later."},"finish_reason":"error_finish"}]}\n\n'
    _, refused = await first_event(Answer(finish), lambda: ChunkNormalizer("qwen-plus"))
    assert refused is not None and refused.kind == THROTTLE


async def test_an_answer_goes_on_its_first_bytes_replayed_exactly():
    resp, refused = await first_event(Answer(ROLE[:20], ROLE[20:] + TEXT[:5], TEXT[5:]), lambda: ChunkNormalizer("m"))
    assert refused is None and await body(resp) == ROLE + TEXT
    await resp.aclose()


async def test_a_break_before_the_first_event_is_handed_on_where_it_came():
    cut = ConnectionFailed("the connection broke: ConnectionResetError")
    resp, refused = await first_event(Answer(ROLE[:30], cut), lambda: ChunkNormalizer("m"))
    assert refused is None
    got = []
    with pytest.raises(ConnectionFailed):
        async for chunk in resp.aiter_raw():
            got.append(chunk)
    assert got == [ROLE[:30]]
    resp, _ = await first_event(Answer(ROLE[:30]), lambda: ChunkNormalizer("m"))  # the body simply ended
    assert await body(resp) == ROLE[:30]


async def test_an_error_of_the_server_stays_a_server_error():
    error = b'data: {"error":{"message":"stream timeout","type":"server_error","code":"504"}}\n\n'
    _, refused = await first_event(Answer(error), lambda: ChunkNormalizer("m"))
    assert refused is not None and refused.kind != CLIENT and refused.status == 504
    boom = b'data: {"error":{"message":"Internal error","type":"server_error","code":"InternalError"}}\n\n'
    _, refused = await first_event(Answer(boom), lambda: ChunkNormalizer("m"))
    assert refused is not None and refused.kind == SERVER
