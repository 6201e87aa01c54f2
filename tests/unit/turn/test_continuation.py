"""A stream that outlives its account (turn/continuation.py): a break after the client received part of the answer
(Qwen throttling inside the stream, an error event, the stream cut) is continued from what was answered, on the
same account or, throttled, another; the client reads one answer, its ids unchanged, its usage both requests'.
Where continuing is not safe the client gets the stream's error as before."""

from __future__ import annotations

import json

import pytest
from mitmproxy.test import tflow

from qwen_gateway.accounts import KEY, Credential, Outcome
from qwen_gateway.api.chat import ChatStreamTranslator
from qwen_gateway.dispatch import Observers
from qwen_gateway.errors import GatewayError
from qwen_gateway.exchange import ClientRequest, Exchange, Retry, RetryReason
from qwen_gateway.interfaces import Endpoint
from qwen_gateway.local_answers import Formats
from qwen_gateway.tokens import encoding
from qwen_gateway.turn.continuation import MAX_CONTINUATIONS
from qwen_gateway.turn.runner import Turns
from qwen_gateway.turn.settlement import Settlement
from qwen_gateway.upstream.dashscope.request import chat_to_qwen
from qwen_gateway.upstream.dashscope.upstream import DASHSCOPE

FIRST, OTHER = Credential("first", KEY, "https://q.example/v1", "k1"), Credential("other", KEY, "https://q/v1", "k2")
THROTTLED = "Requests rate limit exceeded, please try again later."


def event(content: str | None = None, finish: str | None = None, *, cid: str = "chatcmpl-a", usage=None,
          **delta) -> bytes:
    if content is not None:
        delta["content"] = content
    choices = [] if finish is None and not delta else [{"index": 0, "delta": delta, "finish_reason": finish}]
    chunk = {"id": cid, "object": "chat.completion.chunk", "created": 7 if cid == "chatcmpl-a" else 9,
             "model": "qwen3-coder-plus", "choices": choices, "usage": usage}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"
USAGE = {"prompt_tokens": 40, "completion_tokens": 3, "total_tokens": 43, "prompt_tokens_details": {"cached_tokens": 8}}
# what Qwen streams: the first piece of text, then R6's throttling inside the stream
BROKEN = [event("", role="assistant"), event("Echo: "), event(THROTTLED, "error_finish"), DONE]
REST = [event("", role="assistant", cid="chatcmpl-b"), event("say ", cid="chatcmpl-b"),
        event("hello", cid="chatcmpl-b"), event(None, "stop", cid="chatcmpl-b"),
        event(cid="chatcmpl-b", usage=USAGE), DONE]


class Answer:
    def __init__(self, chunks: list[bytes], status: int = 200) -> None:
        self.status_code, self.headers = status, {"content-type": "text/event-stream"}
        self.chunks, self.closed = chunks, False

    async def aiter_raw(self):
        for chunk in self.chunks:
            if isinstance(chunk, Exception):
                raise chunk
            yield chunk

    async def aread(self) -> bytes:
        return b"".join(self.chunks)

    async def aclose(self) -> None:
        self.closed = True


class Pool:
    def __init__(self) -> None:
        self.reports: list[tuple] = []

    def report(self, account, outcome, **kw) -> None:
        self.reports.append((account, Outcome(outcome)))


class Client:
    """The transport: every byte the client got."""

    capture, keeps, ends_record, client = 0, False, False, None

    def __init__(self) -> None:
        self.sent = b""
        self.refused: GatewayError | None = None

    def translator(self, ex):
        return None

    async def begin(self, ex) -> None:
        pass

    async def send(self, outs) -> None:
        self.sent += b"".join(outs)

    async def whole(self, ex, answer) -> bool:
        raise AssertionError("a stream was answered whole")

    async def refuse(self, ex, err) -> None:
        self.refused = err

    def cancelled(self, ex) -> None:
        pass

    def ended(self, ex, final) -> None:
        pass

    def events(self) -> list:
        return [e[6:] if e == "data: [DONE]" else json.loads(e[6:]) for e in self.sent.decode().split("\n\n") if e]

    def text(self) -> str:
        return "".join(c["delta"].get("content") or "" for e in self.events() if isinstance(e, dict)
                       for c in e.get("choices") or [])


class World:
    """A turn whose engine opens `first` and continues with each of `then` in turn (None: it cannot)."""

    def __init__(self, first: list[bytes], *then: list[bytes] | Exception, model: str = "qwen3-coder-plus",
                 **client) -> None:
        self.pool = Pool()
        self.then = list(then)
        self.resumed: list[tuple[str, str, tuple]] = []
        self.answers: list[Answer] = []
        settle = Settlement(pool=lambda: self.pool, observers=Observers([]), flows={}, formats=Formats({}))

        async def open_upstream(ex):
            ex.attempt.cred, ex.attempt.upstream = FIRST, DASHSCOPE
            ex.attempt.body = chat_to_qwen(ex.chat_body, model=model, oauth=False)
            ex.attempt.model = model
            return self.answer(first)

        async def resume_upstream(ex, prefix, exclude):  # as the engine's: a retry noted, the request sent again
            self.resumed.append((ex.account, prefix, tuple(exclude)))
            ex.attempt.retries.append(Retry(RetryReason.CONTINUED, ex.account))
            nxt = self.then.pop(0)
            if isinstance(nxt, Exception):
                raise nxt
            if exclude:
                ex.attempt.cred = OTHER
            ex.attempt.body = DASHSCOPE.continued(ex.attempt.body, prefix) if prefix else ex.attempt.body
            return self.answer(nxt)

        self.turns = Turns(open_upstream=open_upstream, checks=(), observers=Observers([]), settlement=settle,
                           idle_timeout=lambda: 300, resume_upstream=resume_upstream)
        endpoint = Endpoint("chat.completions", to_chat=lambda b, e: dict(b), from_chat=lambda d, e: d,
                            stream_translator=lambda e: ChatStreamTranslator(True))
        self.ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://x/v1/chat/completions"),
                           endpoint=endpoint)
        self.turns.received(self.ex, {"model": "gpt-4o", "messages": [{"role": "user", "content": "say hello"}],
                                      "stream": True, **client}, tflow.tflow())
        self.client = Client()

    def answer(self, chunks) -> Answer:
        self.answers.append(Answer(chunks))
        return self.answers[-1]

    async def run(self) -> Client:
        await self.turns.run(self.ex, self.client)
        return self.client


def assert_errored(client: Client, code: str) -> None:
    last = [e for e in client.events() if isinstance(e, dict)][-1]
    assert last.get("error", {}).get("code") == code, client.events()


async def test_a_throttled_stream_goes_on_on_another_account_and_the_client_reads_one_answer():
    w = World(BROKEN, REST)
    client = await w.run()
    assert client.text() == "Echo: say hello" and client.events()[-1] == "[DONE]"
    assert not any("error" in e for e in client.events() if isinstance(e, dict))
    assert {e["id"] for e in client.events() if isinstance(e, dict)} == {"chatcmpl-a"}  # Qwen's first id, kept
    assert {e["created"] for e in client.events() if isinstance(e, dict)} == {7}
    roles = [c["delta"].get("role") for e in client.events() if isinstance(e, dict) for c in e["choices"]]
    assert roles.count("assistant") == 1
    assert w.resumed == [("first", "Echo: ", ("first",))]  # the throttled account left out
    assert ("first", Outcome.THROTTLE) in w.pool.reports and ("other", Outcome.OK) in w.pool.reports
    assert [r.reason for r in w.ex.attempt.retries] == [RetryReason.CONTINUED]
    assert any("continued on other after 6 characters" in n and THROTTLED in n for n in w.ex.notes), w.ex.notes
    assert all(a.closed for a in w.answers[1:])
    assert w.ex.result.error is None and w.ex.result.stream_error is None


async def test_usage_is_both_requests_the_broken_ones_estimated_from_the_continuations():
    """Qwen reported no usage for the request that broke: its prompt is the continuation's less the prefix (Qwen's
    count of the same prompt), its output the text it sent; both go to the client and the record."""
    w = World(BROKEN, REST)
    client = await w.run()
    spent = encoding().count("Echo: ")
    usage = [e for e in client.events() if isinstance(e, dict) and e.get("usage")][-1]["usage"]
    assert usage["prompt_tokens"] == 40 + (40 - spent)
    assert usage["completion_tokens"] == 3 + spent
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 8
    assert w.ex.result.usage == usage
    assert any("the gateway's estimate (Qwen reported none)" in n for n in w.ex.notes), w.ex.notes


async def test_the_estimate_is_on_the_record_of_a_client_that_leaves_at_done():
    """The client reads [DONE] and closes at once: mitmproxy's `error` writes the record then (Settlement.broken,
    through `stream_outcome`), while the turn's pump may still be closing the continuation. The estimate's note
    is on that record too (seen missing once, on a busy machine)."""
    w = World(BROKEN, REST)
    recorded: list[list[str]] = []
    send = w.client.send

    async def send_and_leave(outs) -> None:
        await send(outs)
        if any(b"[DONE]" in out for out in outs):
            Settlement.stream_outcome(w.ex)  # what `broken` records before it finishes the flow
            recorded.append(list(w.ex.notes))
    w.client.send = send_and_leave  # type: ignore[method-assign]
    await w.run()
    assert recorded and any("the gateway's estimate (Qwen reported none)" in n for n in recorded[0]), recorded
    assert sum("the gateway's estimate" in n for n in w.ex.notes) == 1, w.ex.notes  # once, however it ends


@pytest.mark.parametrize("cut", [
    [event("", role="assistant"), event("Echo: ")],  # the stream ended without a finish
    [event("", role="assistant"), event("Echo: "), ConnectionResetError()],  # the connection dropped
    [event("", role="assistant"), event("Echo: "),
     b'data: {"error":{"message":"stream timeout","type":"server_error","code":"504"}}\n\n'],  # 5xx inside
])
async def test_a_dropped_or_failed_stream_goes_on_on_the_same_account(cut):
    from qwen_gateway.errors import ConnectionFailed
    cut = [ConnectionFailed("reset") if isinstance(c, Exception) else c for c in cut]
    w = World(cut, REST)
    client = await w.run()
    assert client.text() == "Echo: say hello" and client.events()[-1] == "[DONE]"
    assert w.resumed == [("first", "Echo: ", ())]
    assert ("first", Outcome.THROTTLE) not in w.pool.reports


async def test_at_most_two_continuations_then_the_error():
    w = World(BROKEN, BROKEN, BROKEN, REST)
    client = await w.run()
    assert len(w.resumed) == MAX_CONTINUATIONS == 2 and w.resumed[1][1] == "Echo: Echo: "
    assert_errored(client, "rate_limit_exceeded")
    assert [r.reason for r in w.ex.attempt.retries] == [RetryReason.CONTINUED] * 2


async def test_no_other_account_is_the_documented_error():
    w = World(BROKEN, GatewayError(429, "every account is cooling down", type="requests", code="rate_limit_exceeded"))
    client = await w.run()
    assert_errored(client, "rate_limit_exceeded")
    assert THROTTLED in json.dumps(client.events())  # the break's own error, as before
    assert any("not continued" in n for n in w.ex.notes), w.ex.notes


def call(index: int, **fn) -> dict:
    return {"index": index, "id": "call_1", "type": "function", "function": fn}


async def test_a_break_before_any_text_sends_the_request_again_on_any_model():
    """Nothing but the answer's opening went out: the request is sent again as it was (no partial mode needed, so
    a model without it too), on another account when throttled; the client reads one answer."""
    whole = [event("", role="assistant", cid="chatcmpl-b"), event("Echo: say hello", cid="chatcmpl-b"),
             event(None, "stop", cid="chatcmpl-b"), event(cid="chatcmpl-b", usage=USAGE), DONE]
    w = World([event("", role="assistant"), event(THROTTLED, "error_finish")], whole, model="qwen3.8-max")
    client = await w.run()
    assert client.text() == "Echo: say hello" and client.events()[-1] == "[DONE]"
    assert w.resumed == [("first", "", ("first",))]
    assert "partial" not in json.dumps(w.ex.attempt.body)  # the request as it was
    roles = [c["delta"].get("role") for e in client.events() if isinstance(e, dict) for c in e["choices"]]
    assert roles.count("assistant") == 1
    assert any("sent again on other, nothing of the answer having gone out" in n for n in w.ex.notes), w.ex.notes


@pytest.mark.parametrize("first,why", [
    ([event("", role="assistant"), event(tool_calls=[call(0, name="get_time", arguments='{"tz": "U')]),
      event(THROTTLED, "error_finish")], "a tool call half sent"),
    ([event("", role="assistant"), event("Let me "), event(tool_calls=[call(0, name="get_time", arguments="{")]),
      event(THROTTLED, "error_finish")], "text, then a tool call half sent"),
    ([event("", role="assistant"), event(reasoning_content="Thinking."), event("Echo: "),
      event(THROTTLED, "error_finish")], "thinking"),
])
async def test_where_continuing_is_not_safe_the_client_gets_the_error(first, why):
    w = World(first, REST)
    client = await w.run()
    assert w.resumed == [], why
    assert_errored(client, "rate_limit_exceeded")


async def test_a_model_without_partial_mode_is_not_continued():
    w = World(BROKEN, REST, model="qwen3.8-max")
    client = await w.run()
    assert w.resumed == [] and "say hello" not in client.text()
    assert_errored(client, "rate_limit_exceeded")


async def test_a_request_in_thinking_mode_is_not_continued():
    w = World(BROKEN, REST, model="qwen-plus", enable_thinking=True)
    client = await w.run()
    assert w.resumed == []
    assert_errored(client, "rate_limit_exceeded")


async def test_a_client_error_inside_the_stream_is_not_continued():
    bad = [event("", role="assistant"), event("Echo: "),
           b'data: {"error":{"message":"Input data may contain inappropriate content.","type":"invalid_request_error",'
           b'"code":"data_inspection_failed"}}\n\n']
    w = World(bad, REST)
    await w.run()
    assert w.resumed == []
