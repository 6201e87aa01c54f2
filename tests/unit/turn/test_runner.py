"""The turn's one choreography (turn/runner.py, `Turns.run`) through a transport that records what it is told:
a whole answer, a stream pumped event by event, a refusal before upstream, a refusal of the engine, the
gateway's own fault (500, logged once), a cancelled turn, and a record written by the turn only for the
transports that have no mitmproxy hook to write it."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from mitmproxy import http
from mitmproxy.test import tflow

from qwen_gateway.accounts import OAUTH, Credential
from qwen_gateway.dispatch import Observers
from qwen_gateway.errors import GatewayError
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.local_answers import Formats
from qwen_gateway.interfaces import Endpoint
from qwen_gateway.api.chat import ChatStreamTranslator
from qwen_gateway.turn.runner import Turns
from qwen_gateway.turn.settlement import Settlement
from qwen_gateway.upstream.dashscope.upstream import DASHSCOPE

CRED = Credential("acct", OAUTH, "https://q.example/v1", "tok")
ANSWER = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
STREAM = [b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
          b'"delta":{"content":"Hel"},"finish_reason":null}]}\n\n',
          b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
          b'"delta":{"content":"lo"},"finish_reason":"stop"}]}\n\n', b"data: [DONE]\n\n"]


class Upstream:
    """The engine's answer (interfaces.UpstreamAnswer): whole JSON or an SSE stream."""

    def __init__(self, stream: bool) -> None:
        self.status_code = 200
        self.headers = {"content-type": "text/event-stream" if stream else "application/json"}
        self.chunks = STREAM if stream else [http.Response.make(200, b"").content or b""]
        self.closed = False
        self.stream = stream

    async def aiter_raw(self):
        for chunk in self.chunks:
            yield chunk

    async def aread(self) -> bytes:
        import json
        return json.dumps(ANSWER).encode()

    async def aclose(self) -> None:
        self.closed = True


class Recorder:
    """A transport (turn.Transport) that keeps what it is told, in order."""

    capture = 0
    keeps = False
    client = None

    def __init__(self, ends_record: bool = False, carries_whole: bool = True) -> None:
        self.ends_record = ends_record
        self.carries_whole = carries_whole  # False: a stream's transport (a WebSocket turn, a background run)
        self.told: list[tuple] = []

    def translator(self, ex):
        return None

    async def begin(self, ex) -> None:
        self.told.append(("begin",))

    async def send(self, outs) -> None:
        self.told.append(("send", b"".join(outs)))

    async def whole(self, ex, answer) -> bool:
        self.told.append(("whole", answer.status_code, answer.content))
        return self.carries_whole

    async def refuse(self, ex, err) -> None:
        self.told.append(("refuse", err.status, err.code, err.message))

    def cancelled(self, ex) -> None:
        self.told.append(("cancelled",))

    def ended(self, ex, final) -> None:
        self.told.append(("ended", final is not None))


def setup(*, opened=None, checks=()):
    """A turn over a chat endpoint and DashScope's chunk source; `opened`: the engine's `open`."""
    settle = Settlement(pool=lambda: None, observers=Observers([]), flows={}, formats=Formats({}))

    async def open_upstream(ex):
        ex.attempt.cred, ex.attempt.upstream = CRED, DASHSCOPE
        return await opened(ex) if opened else Upstream(ex.stream)
    turns = Turns(open_upstream=open_upstream, checks=checks, observers=Observers([]), settlement=settle,
                  idle_timeout=lambda: 300)
    endpoint = Endpoint("chat.completions", to_chat=lambda b, e: dict(b), from_chat=lambda d, e: d,
                        stream_translator=lambda e: ChatStreamTranslator({}))
    return turns, endpoint


def exchange(turns, endpoint, *, stream: bool) -> tuple[Exchange, http.HTTPFlow]:
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://x/v1/chat/completions"), endpoint=endpoint)
    flow = tflow.tflow()
    turns.received(ex, {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}, flow)
    return ex, flow


async def test_a_whole_answer_is_translated_and_handed_over():
    turns, endpoint = setup()
    ex, _ = exchange(turns, endpoint, stream=False)
    t = Recorder()
    await turns.run(ex, t)
    [(kind, status, body), ended] = t.told
    assert (kind, status, ended) == ("whole", 200, ("ended", True)) and b"Hello" in body
    assert ex.turn.translated and ex.result.error is None and ex.turn.served


async def test_a_stream_begins_then_sends_each_event_then_ends():
    turns, endpoint = setup()
    ex, _ = exchange(turns, endpoint, stream=True)
    t = Recorder()
    await turns.run(ex, t)
    kinds = [told[0] for told in t.told]
    assert kinds[0] == "begin" and kinds[-1] == "ended" and set(kinds[1:-1]) == {"send"}
    sent = b"".join(told[1] for told in t.told if told[0] == "send")
    assert b'"Hel"' in sent and b'"lo"' in sent and sent.endswith(b"data: [DONE]\n\n")
    assert ex.turn.rewriter is not None and ex.turn.served


async def test_a_stream_answered_whole_where_the_transport_cannot_carry_it_ends_502_decided_by_the_turn():
    """Qwen answered a stream request whole: a transport that can carry only events says so, and the turn (not the
    transport) ends the exchange 502, once, through the transport's refusal."""
    async def whole_answer(ex):
        return Upstream(False)
    turns, endpoint = setup(opened=whole_answer)
    ex, _ = exchange(turns, endpoint, stream=True)
    t = Recorder(carries_whole=False)
    await turns.run(ex, t)
    assert [told[0] for told in t.told] == ["whole", "refuse", "ended"]
    assert t.told[1] == ("refuse", 502, "invalid_upstream_response", "Qwen answered with no stream.")
    assert ex.result.status == 502 and ex.result.error.code == "invalid_upstream_response"


async def test_a_refusal_before_upstream_reaches_the_transport_and_nothing_goes_upstream():
    async def refused_check(ex):
        raise GatewayError(429, "budget spent", code="insufficient_quota")

    opened = []

    async def opening(ex):
        opened.append(ex)
    turns, endpoint = setup(checks=(refused_check,), opened=opening)
    ex, _ = exchange(turns, endpoint, stream=True)
    t = Recorder()
    await turns.run(ex, t)
    assert t.told == [("refuse", 429, "insufficient_quota", "budget spent"), ("ended", False)]
    assert opened == [] and ex.result.error is not None and ex.result.error.status == 429


async def test_the_engines_refusal_is_the_clients_error():
    async def opening(ex):
        raise GatewayError(401, "no login", code="qwen_login_required")
    turns, endpoint = setup(opened=opening)
    for stream in (False, True):
        ex, _ = exchange(turns, endpoint, stream=stream)
        t = Recorder()
        await turns.run(ex, t)
        assert t.told == [("refuse", 401, "qwen_login_required", "no login"), ("ended", False)]


async def test_the_gateways_own_fault_is_one_500_said_once_in_the_log(caplog):
    async def opening(ex):
        raise KeyError("boom")
    turns, endpoint = setup(opened=opening)
    ex, _ = exchange(turns, endpoint, stream=True)
    t = Recorder()
    with caplog.at_level(logging.ERROR, logger="qwen"):
        await turns.run(ex, t)
    assert t.told == [("refuse", 500, None, "The gateway failed: KeyError."), ("ended", False)]
    assert [r.message for r in caplog.records] == ["qwen: a turn failed"]


async def test_a_cancelled_turn_tells_the_transport_and_goes_on_being_cancelled():
    started = asyncio.Event()

    async def opening(ex):
        started.set()
        await asyncio.Event().wait()
    turns, endpoint = setup(opened=opening)
    ex, _ = exchange(turns, endpoint, stream=True)
    t = Recorder()
    task = asyncio.ensure_future(turns.run(ex, t))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert t.told == [("cancelled",), ("ended", False)]


@pytest.mark.parametrize("ends_record", [False, True])
async def test_the_turn_writes_the_record_only_where_no_mitmproxy_hook_will(ends_record):
    turns, endpoint = setup()
    ex, flow = exchange(turns, endpoint, stream=True)
    await turns.run(ex, Recorder(ends_record=ends_record))
    assert ("qwen" in flow.metadata) is ends_record


async def test_a_translated_exchange_goes_on_from_there():
    """A background run's copy of its POST's exchange was translated and checked already: not again."""
    checked = []

    async def check(ex):
        checked.append(ex)
    turns, endpoint = setup(checks=(check,))
    ex, _ = exchange(turns, endpoint, stream=True)
    ex.turn.translated, ex.chat_body = True, {"model": "m", "messages": [], "stream": True}
    await turns.run(ex, Recorder())
    assert checked == []


async def test_a_long_chat_request_is_translated_in_a_worker_thread(monkeypatch):
    """Issue 79 item 6: a chat request of more messages than off_loop.MESSAGES is checked and translated by a
    worker thread (200,000 messages held the event loop for seconds); a short one on the loop, as before."""
    from qwen_gateway import off_loop
    from qwen_gateway.api import chat
    threads = []
    real = chat.validate_chat_request
    monkeypatch.setattr(chat, "validate_chat_request", lambda body: threads.append(threading.get_ident()) or real(body))
    turns, _ = setup()
    for n in (off_loop.MESSAGES, off_loop.MESSAGES + 1):
        ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://x/v1/chat/completions"), endpoint=chat.CHAT)
        turns.received(ex, {"model": "m", "messages": [{"role": "user", "content": "hi"}] * n}, tflow.tflow())
        await turns.translate(ex)
        assert len(ex.chat_body["messages"]) == n and ex.conversation is not None
    assert threads[0] == threading.get_ident() != threads[1]
