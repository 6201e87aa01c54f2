"""The invariant of a stream cut at any byte (issue 67), over every byte offset of recorded upstream streams — chat
with usage, several choices, log probabilities, a tool call, thinking — through the turn's pump, its rewriter and
its continuation, as each client dialect reads the result (chat completions, the Responses API, the Messages API):
the client's assembled answer is exactly the unbroken answer's, or it ends with the dialect's terminal error and
what it got so far is a prefix of it. One id, gap-free indexes and sequence numbers (tests/helpers/cuts.py).

The streams are the emulator's (scripts/emulator/chat.py, which plays Model Studio's stream shape), and so are the
continuations: the turn's partial-mode request answered by the emulator's own plan for it. Each offset is cut one
of three ways in turn: the body ends there, the connection breaks there, or Qwen goes silent there."""

from __future__ import annotations

import functools
import json
import random
import sys
from collections import Counter
from pathlib import Path

import pytest
from mitmproxy.test import tflow

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))  # the emulator, as tests/emulation reads it
from emulator import chat as emu_chat  # noqa: E402
from emulator.state import State  # noqa: E402
from helpers import cuts  # noqa: E402
from qwen_gateway.accounts import KEY, Credential  # noqa: E402
from qwen_gateway.api.chat import ChatStreamTranslator  # noqa: E402
from qwen_gateway.api.messages.stream import MessagesStreamTranslator  # noqa: E402
from qwen_gateway.api.responses.stream import ResponsesStreamTranslator  # noqa: E402
from qwen_gateway.dispatch import Observers  # noqa: E402
from qwen_gateway.errors import ConnectionFailed, UpstreamTimeout  # noqa: E402
from qwen_gateway.exchange import ClientRequest, Exchange, Retry, RetryReason  # noqa: E402
from qwen_gateway.interfaces import Endpoint  # noqa: E402
from qwen_gateway.local_answers import Formats  # noqa: E402
from qwen_gateway.turn.runner import Turns  # noqa: E402
from qwen_gateway.turn.settlement import Settlement  # noqa: E402
from qwen_gateway.upstream.dashscope.request import chat_to_qwen  # noqa: E402
from qwen_gateway.upstream.dashscope.upstream import DASHSCOPE  # noqa: E402

ACCOUNT = Credential("a", KEY, "https://q.example/compatible-mode/v1", "k")
ASK = "say héllo wörld 🎉 ok"
ENDINGS = ("end", "reset", "silent")
# (name, the client's chat request) — every recorded stream answers one of these
CASES = {
    "usage": {"model": "qwen3-coder-plus", "stream_options": {"include_usage": True}},
    "n2": {"model": "qwen-plus", "n": 2, "stream_options": {"include_usage": True}},
    "logprobs": {"model": "qwen-plus", "logprobs": True, "top_logprobs": 2},
    "tools": {"model": "qwen3-coder-plus", "tool_choice": "required", "tools": [{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]},
    "thinking": {"model": "qwen3.6-plus", "enable_thinking": True, "stream_options": {"include_usage": True}},
}


class Answer:
    """Qwen's answer: `data` as its body arrives (in two reads), then how it stops."""

    status_code, headers = 200, {"content-type": "text/event-stream"}

    def __init__(self, data: bytes, ending: str | None = None) -> None:
        self.data, self.ending = data, ending
        self.closed = False

    async def aiter_raw(self):
        split = random.Random(len(self.data)).randrange(len(self.data) + 1)
        for part in (self.data[:split], self.data[split:]):
            if part:
                yield part
        if self.ending == "reset":
            raise ConnectionFailed("the connection broke: ConnectionResetError")
        if self.ending == "silent":
            raise UpstreamTimeout("no data for 300 s")

    async def aclose(self) -> None:
        self.closed = True


# The emulator's defaults, read once (its chat stream only reads them), with the shortest answer that has every
# kind of place a cut can fall (cuts.SHORTEST): the text in two pieces, multibyte characters in both ("é"; "ö", "🎉").
SWITCHES = {**State().snapshot(), **cuts.SHORTEST}


def qwen_stream(body: dict) -> bytes:
    """The emulator's stream for a DashScope body (ids and times as Model Studio sends them)."""
    events = emu_chat.chunks(body, emu_chat.plan(body, SWITCHES), SWITCHES)
    return b"".join(b"data: " + json.dumps(e, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
                    for e in events) + b"data: [DONE]\n\n"


def client_request(case: str) -> dict:
    """The client's streamed chat request of `case`."""
    return {"messages": [{"role": "user", "content": ASK}], "stream": True, **CASES[case]}


@functools.cache
def whole_stream(case: str) -> bytes:
    """The stream each cut of `case` is cut from: one answer of the emulator's (its continuations are new ones)."""
    request = client_request(case)
    return qwen_stream(chat_to_qwen(request, model=request["model"], oauth=False))


class Pool:
    def report(self, *a, **kw) -> None:
        pass


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
        raise AssertionError("a stream answered whole")

    async def refuse(self, ex, err) -> None:
        raise AssertionError(f"refused: {err}")

    def cancelled(self, ex) -> None:
        pass

    def ended(self, ex, final) -> None:
        pass


def translator(dialect: str, request: dict):
    if dialect == "chat":
        return ChatStreamTranslator(bool((request.get("stream_options") or {}).get("include_usage")), request)
    if dialect == "responses":
        return ResponsesStreamTranslator({"model": request["model"]}, response_id="resp_1", created_at=1)
    return MessagesStreamTranslator(model=request["model"], sign=lambda t: f"signed({len(t)})")


async def turn(dialect: str, case: str, cut: tuple[int, str] | None) -> tuple[bytes, Exchange]:
    """One streamed turn of `case` read by `dialect`'s client, its stream cut at (byte, ending) or whole."""
    request = client_request(case)
    model = request["model"]
    whole = whole_stream(case)
    data, ending = (whole[:cut[0]], cut[1]) if cut else (whole, None)

    async def open_upstream(ex):
        ex.attempt.cred, ex.attempt.upstream = ACCOUNT, DASHSCOPE
        ex.attempt.body = chat_to_qwen(ex.chat_body, model=model, oauth=False)
        ex.attempt.model = model
        return Answer(data, ending)

    async def resume_upstream(ex, prefix, exclude):  # the engine's: partial mode's request, answered by the emulator
        ex.attempt.retries.append(Retry(RetryReason.CONTINUED, ex.account))
        body = DASHSCOPE.continued(ex.attempt.body, prefix) if prefix else ex.attempt.body  # nothing sent: again
        assert body is not None
        ex.attempt.body = body
        return Answer(qwen_stream(body))

    settle = Settlement(pool=lambda: Pool(), observers=Observers([]), flows={}, formats=Formats({}))
    turns = Turns(open_upstream=open_upstream, checks=(), observers=Observers([]), settlement=settle,
                  idle_timeout=lambda: 300, resume_upstream=resume_upstream)
    endpoint = Endpoint("chat.completions", to_chat=lambda b, e: dict(b), from_chat=lambda d, e: d,
                        stream_translator=lambda e: None)
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://x/v1/chat/completions"), endpoint=endpoint)
    turns.received(ex, request, tflow.tflow())
    ex.chat_body = dict(request)
    client = Client(translator(dialect, request))
    await turns.run(ex, client)
    return client.sent, ex


def assembled(dialect: str, raw: bytes) -> tuple[str, dict]:
    """(outcome, what the client assembled): the dialect's invariant checked first (tests/helpers/cuts.py)."""
    if dialect == "chat":
        events = [json.loads(d) for _, d in cuts.sse_events(raw) if d != "[DONE]"]
        got: dict = {}
        for e in events:
            for c in e.get("choices") or []:
                k = c["index"]
                d = c["delta"]
                for field in ("content", "reasoning_content"):
                    got[(k, field)] = got.get((k, field), "") + (d.get(field) or "")
                for call in d.get("tool_calls") or []:
                    got[(k, "call", call["index"])] = got.get((k, "call", call["index"]), "") + \
                        call["function"].get("arguments", "") + call["function"].get("name", "")
                if c.get("logprobs"):
                    got[(k, "logprobs")] = got.get((k, "logprobs"), "") + "".join(
                        t["token"] for t in c["logprobs"]["content"])
        ids = {e["id"] for e in events if "id" in e}
        assert len(ids) <= 1, ids
        return _chat_outcome(raw), got
    if dialect == "responses":
        events = [json.loads(d) for _, d in cuts.sse_events(raw)]
        text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
        outcome = cuts.responses(events, text if events[-1]["type"] == "response.completed" else text + "\0")
        got = {"text": text, "reasoning": "".join(e.get("delta", "") for e in events
                                                 if e["type"].startswith("response.reasoning"))}
        calls = [e["item"] for e in events if e["type"] == "response.output_item.done"
                 and e["item"]["type"] == "function_call"]
        if events[-1]["type"] != "response.completed":  # a call the failure cut short is said to be incomplete
            assert all(c["status"] == "incomplete" for c in calls[-1:]), calls
        got.update({f"call {i}": (c["name"], c["arguments"]) for i, c in enumerate(calls)})
        return outcome, got
    events = [json.loads(d) for _, d in cuts.sse_events(raw)]
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    outcome = cuts.messages(raw, text if events[-1]["type"] == "message_stop" else text + "\0")
    got = {"text": text, "thinking": "".join(e["delta"].get("thinking", "") for e in events
                                             if e["type"] == "content_block_delta"),
           "tool": "".join(e["delta"].get("partial_json", "") for e in events if e["type"] == "content_block_delta")}
    return outcome, got


def _begins(whole: object, part: object) -> bool:
    """`part` is what a client got of `whole` before the stream failed: its start (a tuple: each part's start)."""
    if isinstance(whole, tuple) and isinstance(part, tuple):
        return len(whole) == len(part) and all(map(_begins, whole, part))
    return whole == part if not isinstance(whole, str) or not isinstance(part, str) else whole.startswith(part)


def _chat_outcome(raw: bytes) -> str:
    events = cuts.sse_events(raw)
    assert events[-1][1] == "[DONE]", events[-2:]
    last = json.loads(events[-2][1]) if len(events) > 1 else {}
    return f"error:{last['error'].get('code')}" if "error" in last else cuts.WHOLE


@pytest.mark.parametrize("dialect", ["chat", "responses", "messages"])
@pytest.mark.parametrize("case", list(CASES))
async def test_every_byte_offset_gives_the_whole_answer_or_the_terminal_error(dialect, case):
    if dialect != "chat" and case in ("n2", "logprobs"):
        pytest.skip("one choice, no log probabilities in this dialect: the chat request's own features")
    raw, ex = await turn(dialect, case, None)
    outcome, whole = assembled(dialect, raw)
    assert outcome == cuts.WHOLE and ex.result.cuts == 0
    length = len(whole_stream(case))
    outcomes: Counter = Counter()
    for at in range(length + 1):
        ending = ENDINGS[at % len(ENDINGS)]
        raw, ex = await turn(dialect, case, (at, ending))
        try:
            outcome, got = assembled(dialect, raw)
            if outcome == cuts.WHOLE:
                assert got == whole, (got, whole)
            else:
                assert set(got) <= set(whole) and all(_begins(whole[k], v) for k, v in got.items()), (got, whole)
                assert ex.result.stream_error and ex.result.cuts >= 1
        except AssertionError as e:
            raise AssertionError(f"{case}, cut at byte {at} of {length} ({ending}): {e}") from e
        outcomes[outcome] += 1
    assert outcomes[cuts.WHOLE], outcomes  # a cut after Qwen's end at least leaves it whole
    if case in ("usage",):  # partial mode serves it: every cut continued exactly
        assert set(outcomes) == {cuts.WHOLE}, outcomes
