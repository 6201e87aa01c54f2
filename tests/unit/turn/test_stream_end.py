"""A streamed turn ends as soon as its answer is whole (turn/stream_end.py, `relayed` and `tail`, through the turn's
pump), whatever Qwen's body does after: a body kept open after [DONE] is not waited for; a finish whose usage and [DONE] never come ends the
answer whole after TAIL_S, its usage unknown; a [DONE] before the finish ends in the dialect's error — for chat
completions, the Responses API and the Messages API; and a whole answer Qwen could only stream the same way."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from mitmproxy.test import tflow

from helpers import cuts
from qwen_gateway.accounts import KEY, Credential
from qwen_gateway.api.chat import ChatStreamTranslator
from qwen_gateway.api.messages.stream import MessagesStreamTranslator
from qwen_gateway.api.responses.stream import ResponsesStreamTranslator
from qwen_gateway.dispatch import Observers
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.interfaces import Endpoint
from qwen_gateway.local_answers import Formats
from qwen_gateway.turn import stream_end
from qwen_gateway.turn.runner import Turns
from qwen_gateway.turn.settlement import Settlement
from qwen_gateway.upstream.dashscope.upstream import DASHSCOPE

ACCOUNT = Credential("a", KEY, "https://q.example/compatible-mode/v1", "k")
MODEL = "qwen4-max"  # no partial mode: a break is not continued
TEXT = "Echo: the whole answer, forty-nine characters ok"


def event(delta: dict | None, finish: str | None = None, usage: dict | None = None) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return b"data: " + json.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                                   "model": MODEL, "choices": choices, "usage": usage}).encode() + b"\n\n"


USAGE = {"prompt_tokens": 5, "completion_tokens": 12, "total_tokens": 17}
OPENING = event({"role": "assistant", "content": ""}) + event({"content": TEXT[:12]})
FINISH = event({"content": TEXT[12:]}) + event({}, "stop")
DONE = b"data: [DONE]\n\n"
FAULTS = {  # what Qwen sends, then the body hangs (never ends)
    "done_without_finish": OPENING + DONE,
    "open_after_done": OPENING + FINISH + event(None, usage=USAGE) + DONE,
    "stall_before_usage": OPENING + FINISH,
}


class Hanging:
    """Qwen's answer: `data`, then a body that neither ends nor sends anything more."""

    status_code, headers = 200, {"content-type": "text/event-stream"}

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.closed = False

    async def aiter_raw(self):
        yield self.data
        await asyncio.Event().wait()  # open until cancelled
        yield b""

    async def aclose(self) -> None:
        self.closed = True


class Client:
    capture, keeps, ends_record, client = 0, False, False, None

    def __init__(self, translator) -> None:
        self.sent = b""
        self.own = translator

    def translator(self, ex):
        return self.own

    async def begin(self, ex) -> None:
        pass

    async def send(self, outs) -> None:
        self.sent += b"".join(outs)

    async def whole(self, ex, answer) -> bool:
        assert not ex.stream, "a stream answered whole"
        self.sent = answer.content
        return True

    async def refuse(self, ex, err) -> bool:
        assert not ex.stream, f"refused: {err}"
        self.sent = f"refused {err.status} {err.code}".encode()
        return False

    def cancelled(self, ex) -> None:
        pass

    def ended(self, ex, final) -> None:
        pass


class Pool:
    def report(self, *a, **kw) -> None:
        pass


def translator(dialect: str, request: dict):
    if dialect == "chat":
        return ChatStreamTranslator(True, request)
    if dialect == "responses":
        return ResponsesStreamTranslator({"model": MODEL}, response_id="resp_1", created_at=1)
    return MessagesStreamTranslator(model=MODEL, sign=lambda t: t)


async def turn(dialect: str, data: bytes, stream: bool = True) -> tuple[bytes, Exchange, Hanging]:
    request = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": stream,
               "stream_options": {"include_usage": True}}
    answer = Hanging(data)

    async def open_upstream(ex):
        ex.attempt.cred, ex.attempt.upstream, ex.attempt.model = ACCOUNT, DASHSCOPE, MODEL
        ex.attempt.body = dict(request)
        return answer

    settle = Settlement(pool=lambda: Pool(), observers=Observers([]), flows={}, formats=Formats({}))
    turns = Turns(open_upstream=open_upstream, checks=(), observers=Observers([]), settlement=settle,
                  idle_timeout=lambda: 300)
    endpoint = Endpoint("chat.completions", to_chat=lambda b, e: dict(b), from_chat=lambda d, e: d,
                        stream_translator=lambda e: None)
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://x/v1/chat/completions"), endpoint=endpoint)
    turns.received(ex, request, tflow.tflow())
    ex.chat_body = dict(request)
    client = Client(translator(dialect, request))
    await asyncio.wait_for(turns.run(ex, client), 30)  # the idle limit is 300 s: a held stream fails here
    return client.sent, ex, answer


def outcome(dialect: str, raw: bytes) -> str:
    if dialect == "chat":
        return cuts.chat(raw, TEXT)
    if dialect == "responses":
        return cuts.responses_sse(raw, TEXT)
    return cuts.messages(raw, TEXT)


DIALECTS = ("chat", "responses", "messages")
ERRORS = {"chat": "error:upstream_error", "responses": "error:server_error", "messages": "error:api_error"}


@pytest.fixture
def short_tail(monkeypatch):
    monkeypatch.setattr(stream_end, "TAIL_S", 0.3)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_done_without_finish_ends_in_the_dialects_error(dialect):
    raw, ex, _ = await turn(dialect, FAULTS["done_without_finish"])
    assert outcome(dialect, raw) == ERRORS[dialect]
    assert ex.result.cuts == 1 and ex.result.stream_error and "[DONE]" in ex.result.stream_error


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_body_open_after_done_is_not_waited_for(dialect):
    start = time.monotonic()
    raw, ex, answer = await turn(dialect, FAULTS["open_after_done"])
    assert outcome(dialect, raw) == cuts.WHOLE
    assert time.monotonic() - start < stream_end.TAIL_S  # ended at [DONE], not after the tail's limit
    assert answer.closed and ex.result.usage == USAGE and ex.result.stream_error is None and not ex.result.cuts


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_finish_whose_usage_never_comes_ends_whole_its_usage_unknown(dialect, short_tail):
    raw, ex, answer = await turn(dialect, FAULTS["stall_before_usage"])
    assert outcome(dialect, raw) == cuts.WHOLE
    assert answer.closed and ex.result.usage is None and ex.result.stream_error is None and not ex.result.cuts
    assert any("did not arrive (unknown)" in n for n in ex.notes), ex.notes


def test_the_tail_is_a_few_seconds():
    assert 2 <= stream_end.TAIL_S <= 5 and stream_end.DRAIN_S <= 1


@pytest.mark.parametrize(("fault", "said"), [("done_without_finish", "refused 502"), ("open_after_done", TEXT),
                                             ("stall_before_usage", TEXT)])
async def test_a_whole_answer_qwen_could_only_stream_ends_as_a_stream_does(fault, said, short_tail):
    raw, ex, answer = await turn("chat", FAULTS[fault], stream=False)
    if said == TEXT:
        assert json.loads(raw)["choices"][0]["message"]["content"] == TEXT and answer.closed
        assert ex.result.usage == (USAGE if fault == "open_after_done" else None)
    else:
        assert raw.startswith(said.encode()), raw
